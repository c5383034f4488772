// One gateway node configured with a real redis-server, after docs/protocol.md: section "HTTP routes"
// (/ready follows Redis; /metrics names), section "Control bus" (system_announcement reaches /
// sockets, own messages ignored, unknown events tolerated), section "Node stats and liveness"
// (re-registration after a Redis restart).
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { barrier, closeAll, collect, connectUser, freePort, http, newUser, startGateway, test, waitFor,
  T,
} from './support/gateway.mjs';
import { RespClient, startRedis } from './support/redis.mjs';

const publish = (db, serverId, event, data) =>
  db.command('PUBLISH', 'cluster:message', JSON.stringify({ serverId, event, data, timestamp: new Date().toISOString() }));

describe('a node with Redis', () => {
  test('/ready is 503 while the configured Redis is unreachable', async (t) => {
    const deadPort = await freePort();
    const gw = await startGateway(t, { args: ['--redis-url', `redis://127.0.0.1:${deadPort}`] });
    await waitFor(async () => (await http(gw, '/ready')).status === 503, 10_000, { what: '/ready 503 without Redis' });
  });

  test('/ready follows Redis going away and coming back; the stats key is re-registered', async (t) => {
    const redis = await startRedis(t);
    const serverId = `redis-node-${process.pid}`;
    const gw = await startGateway(t, { serverId, args: ['--redis-url', redis.url, '--stats-ttl-secs', '10'] });
    await waitFor(async () => (await http(gw, '/ready')).status === 200, 10_000, { what: '/ready 200 with Redis up' });
    await redis.stop();
    await waitFor(async () => (await http(gw, '/ready')).status === 503, 15_000, { what: '/ready 503 after Redis died' });
    const again = await startRedis(t, { port: redis.port });
    await waitFor(async () => (await http(gw, '/ready')).status === 200, 30_000, { interval: 200, what: '/ready 200 after Redis came back' });
    const db = await RespClient.connect(again.port);
    t.after(() => db.close());
    await waitFor(async () => (await db.command('EXISTS', `cluster:stats:${serverId}`)) === 1, 15_000, {
      interval: 200,
      what: `cluster:stats:${serverId} to be written again into the restarted (empty) Redis`,
    });
  });

  test('system_announcement from another node reaches / sockets; own and unknown messages are ignored', async (t) => {
    const redis = await startRedis(t);
    const serverId = `redis-ann-${process.pid}`;
    const gw = await startGateway(t, { serverId, args: ['--redis-url', redis.url] });
    const db = await RespClient.connect(redis.port);
    t.after(() => db.close());
    const a = await connectUser(gw, newUser('ann'));
    const got = collect(a.socket, 'system_announcement');
    try {
      // Wait until the node is subscribed (PUBSUB NUMSUB counts its subscription).
      await waitFor(async () => {
        const r = await db.command('PUBSUB', 'NUMSUB', 'cluster:message');
        return Number(r[1]) >= 1;
      }, 10_000, { what: 'the node to subscribe to cluster:message' });
      await publish(db, serverId, 'system_announcement', { message: 'my own echo' });
      await publish(db, 'some-other-node', 'an_event_from_the_future', { anything: true });
      await publish(db, 'some-other-node', 'system_announcement', { message: 'from the other node' });
      await waitFor(() => got.length >= 1, T, { what: 'system_announcement' });
      await barrier(a.socket);
      assert.equal(got.length, 1, `expected only the other node's announcement: ${JSON.stringify(got)}`);
      assert.equal(got[0].message, 'from the other node');
      assert.equal((await http(gw, '/ready')).status, 200, 'an unknown control event broke the node');
      // The control bus and the adapter report what they saw on /metrics, under fixed names.
      const metrics = (await http(gw, '/metrics')).text;
      const value = (name) => {
        const line = metrics.split('\n').find((l) => l.startsWith(`${name} `));
        return line === undefined ? undefined : Number(line.slice(name.length + 1));
      };
      assert.ok(value('cluster_control_received_total') >= 1, metrics);
      assert.ok(value('cluster_control_unknown_events_total') >= 1, metrics);
      for (const name of ['cluster_control_published_total', 'cluster_control_malformed_total', 'cluster_control_lagged_total',
        'socketio_adapter_published_total', 'socketio_adapter_received_total', 'socketio_adapter_dropped_total',
        'socketio_adapter_decode_errors_total', 'socketio_adapter_request_timeouts_total', 'socketio_adapter_reconnects_total',
        'socketio_adapter_publish_failures_total', 'socketio_adapter_subscribe_failures_total']) {
        assert.ok(Number.isInteger(value(name)), `${name} missing from /metrics:\n${metrics}`);
      }
      assert.ok(value('socketio_adapter_subscriptions') >= 1, metrics);
      assert.equal(value('redis_connected'), 1, metrics);
    } finally {
      closeAll(a.socket);
    }
  });
});
