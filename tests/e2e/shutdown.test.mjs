// docs/protocol.md, section "Node stats and liveness": graceful shutdown on SIGTERM / SIGINT.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { closeAll, connectUser, http, newUser, once, startGateway, test, waitFor,
  T,
} from './support/gateway.mjs';
import { RespClient, startRedis } from './support/redis.mjs';

const SHORT = ['--drain-secs', '1', '--grace-secs', '5'];

/** Polls /ready as fast as possible and records every status until the process is gone. */
function watchReady(gw) {
  const seen = [];
  let stop = false;
  const loop = (async () => {
    while (!stop && gw.exitCode === undefined && gw.exitSignal === undefined) {
      try {
        seen.push({ at: Date.now(), status: (await http(gw, '/ready', { ms: 1000 })).status });
      } catch {
        seen.push({ at: Date.now(), status: 'unreachable' });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    seen,
    stop: async () => {
      stop = true;
      await loop;
    },
  };
}

describe('section 9: shutdown', () => {
  for (const signal of ['SIGTERM', 'SIGINT']) {
    test(`${signal}: /ready 503, server shutdown to every socket, drain, close, exit 0 within grace`, async (t) => {
      const gw = await startGateway(t, { args: SHORT, serverId: `shutdown-${signal}` });
      const ws = await connectUser(gw, newUser('sdws'), { transport: { transports: ['websocket'] } });
      const poll = await connectUser(gw, newUser('sdpoll'), { transport: { transports: ['polling'] } });
      const chat = await connectUser(gw, newUser('sdchat'), { namespace: '/chat', transport: { transports: ['websocket'] } });
      try {
        assert.equal((await http(gw, '/ready')).status, 200);
        const notices = [ws, poll].map((c) => once(c.socket, 'server shutdown', T));
        const closed = [ws, poll, chat].map((c) =>
          once(c.socket, 'disconnect', 10_000).then((reason) => ({ reason, at: Date.now() })),
        );
        const ready = watchReady(gw);
        const sentAt = Date.now();
        process.kill(gw.pid, signal);

        for (const n of await Promise.all(notices)) {
          assert.equal(n.serverId, gw.serverId);
          assert.equal(typeof n.message, 'string');
          assert.ok(n.message.length > 0);
        }
        await waitFor(() => ready.seen.some((s) => s.status === 503), 2000, { what: '/ready to answer 503 while draining' });
        const ends = await Promise.all(closed);
        for (const e of ends) {
          assert.notEqual(e.reason, 'io client disconnect');
          // Sockets are closed after the drain period, not at once.
          assert.ok(e.at - sentAt >= 900, `a socket was closed ${e.at - sentAt} ms after ${signal}, before the 1 s drain`);
        }
        const { code, signal: killedBy } = await Promise.race([
          gw.exited,
          new Promise((_, rej) => setTimeout(() => rej(new Error('the gateway did not exit within the 5 s grace period (+2 s)')), 7000 - (Date.now() - sentAt))),
        ]);
        await ready.stop();
        assert.equal(killedBy, null, `exited by signal ${killedBy}`);
        assert.equal(code, 0);
        const first503 = ready.seen.find((s) => s.status === 503);
        assert.ok(
          ready.seen.filter((s) => s.at > first503.at && s.status === 200).length === 0,
          `/ready went back to 200 after 503: ${JSON.stringify(ready.seen.map((s) => s.status))}`,
        );
      } finally {
        closeAll(ws.socket, poll.socket, chat.socket);
      }
    });
  }

  test('with Redis: server_shutdown is published on cluster:message and the stats key is removed', async (t) => {
    const redis = await startRedis(t);
    const serverId = `shutdown-redis-${process.pid}`;
    const gw = await startGateway(t, { args: ['--redis-url', redis.url, ...SHORT], serverId });
    const sub = await RespClient.connect(redis.port);
    const db = await RespClient.connect(redis.port);
    t.after(() => {
      sub.close();
      db.close();
    });
    const published = [];
    await sub.subscribe('cluster:message', (_channel, payload) => published.push(payload));
    const a = await connectUser(gw, newUser('sdredis'));
    try {
      await waitFor(async () => (await db.command('EXISTS', `cluster:stats:${serverId}`)) === 1, 10_000, {
        what: `cluster:stats:${serverId} to be written`,
      });
      const ttl = await db.command('TTL', `cluster:stats:${serverId}`);
      assert.ok(ttl > 0, `cluster:stats:${serverId} must have a TTL, got ${ttl}`);
      assert.equal((await http(gw, '/ready')).status, 200);
      const notice = once(a.socket, 'server shutdown', T);
      process.kill(gw.pid, 'SIGTERM');
      assert.equal((await notice).serverId, serverId);
      const { code } = await gw.exited;
      assert.equal(code, 0);
      await waitFor(
        () =>
          published.some((p) => {
            try {
              const m = JSON.parse(p);
              return m.event === 'server_shutdown' && m.serverId === serverId && typeof m.timestamp === 'string';
            } catch {
              return false;
            }
          }),
        3000,
        { what: `a server_shutdown message on cluster:message; got ${JSON.stringify(published)}` },
      );
      assert.equal(await db.command('EXISTS', `cluster:stats:${serverId}`), 0, 'the stats key is still there after exit');
    } finally {
      closeAll(a.socket);
    }
  });
});
