// Redis restarts (SIGKILL, then a new empty redis-server on the same port) while three nodes carry
// traffic: docs/protocol.md section "Node stats and liveness" (when Redis comes back each node
// registers again what it holds, so cluster-wide answers are right again without restarting
// nodes) and section "HTTP routes" (/ready 503 while Redis is unreachable).
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { newRoomId, newUser, test, waitFor } from '../e2e/support/gateway.mjs';
import { RespClient, startRedis } from '../e2e/support/redis.mjs';
import { call, clusterStats, record, startCluster, userOn, waitForEntries, waitForStatsIds, waitReady } from './support/cluster.mjs';

/** Retries `check` (which throws to say what is still wrong) until it passes or `ms` runs out. */
async function eventually(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what} not right within ${ms} ms: ${last?.message}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('Redis restart', () => {
  test('kill redis-server during traffic and start it again on the same port: the cluster recovers without restarting a node', { timeout: 120_000 }, async (t) => {
    const cluster = await startCluster(t, { nodes: 3, statsTtl: 3 });
    const [A, B, C] = cluster.nodes;
    for (const gw of cluster.nodes) await waitForStatsIds(gw, cluster.ids, 6000, 'before the outage');

    const a = await userOn(cluster, A, newUser('rrA'), { t, transport: { transports: ['websocket'] } });
    const b = await userOn(cluster, B, newUser('rrB'), { t });
    const c = await userOn(cluster, C, newUser('rrC'), { t, transport: { transports: ['polling'] } });
    const members = [a, b, c];
    const roomId = newRoomId('rr');
    assert.equal((await call(a.socket, 'create room', { roomId, roomName: 'Outage' }))?.success, true);
    for (const m of members) assert.equal((await call(m.socket, 'join room', { roomId }))?.success, true);
    assert.equal((await call(c.socket, 'get room info', roomId))?.room?.userCount, 3, 'precondition: 3 members cluster-wide');
    const disconnects = members.map((m) => record(m.socket, 'disconnect'));

    // Background traffic through the whole outage: broadcast chat and room messages, acks ignored.
    let traffic = true;
    let sent = 0;
    const pump = (async () => {
      while (traffic) {
        sent += 1;
        a.socket.emit('chat message', { content: `during ${sent}` });
        b.socket.emit('room message', { roomId, message: `room during ${sent}` });
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    t.after(async () => {
      traffic = false;
      await pump;
    });

    await waitFor(() => sent >= 5, 3000, { what: 'traffic to start' });
    await cluster.redis.stop();
    for (const gw of cluster.nodes) await waitReady(gw, 503, 10_000);
    await waitFor(() => sent >= 30, 10_000, { what: 'traffic during the outage' });

    const again = await startRedis(t, { port: cluster.redis.port });
    const outageEnded = Date.now();
    for (const gw of cluster.nodes) await waitReady(gw, 200, 30_000);
    traffic = false;
    await pump;

    for (const gw of cluster.nodes) {
      assert.equal(gw.exitCode, undefined, `${gw.serverId} exited during the outage (code ${gw.exitCode}, signal ${gw.exitSignal})`);
      assert.equal(gw.exitSignal, undefined, `${gw.serverId} exited during the outage`);
    }

    for (const gw of cluster.nodes) await waitForStatsIds(gw, cluster.ids, 10_000, 'after Redis came back');

    await eventually('cross-node chat (A to B and C)', 20_000, async () => {
      const seenB = record(b.socket, 'chat message');
      const seenC = record(c.socket, 'chat message');
      const ack = await call(a.socket, 'chat message', { content: `after ${Date.now()}` });
      if (!ack?.success) throw new Error(`ack ${JSON.stringify(ack)}`);
      await waitForEntries(seenB, (m) => m?.id === ack.messageId, { ms: 1500, what: 'chat from A on node B' });
      await waitForEntries(seenC, (m) => m?.id === ack.messageId, { ms: 1500, what: 'chat from A on node C' });
    });

    await eventually('room message (B to A and C)', 10_000, async () => {
      const seenA = record(a.socket, 'room message');
      const seenC = record(c.socket, 'room message');
      const text = `room after ${Date.now()}`;
      const ack = await call(b.socket, 'room message', { roomId, message: text });
      if (!ack?.success) throw new Error(`ack ${JSON.stringify(ack)}`);
      await waitForEntries(seenA, (m) => m?.message === text, { ms: 1500, what: 'room message from B on node A' });
      await waitForEntries(seenC, (m) => m?.message === text, { ms: 1500, what: 'room message from B on node C' });
    });

    await eventually('online users and room counts on every node', 10_000, async () => {
      for (const [i, m] of members.entries()) {
        const { users } = await call(m.socket, 'get online users');
        for (const other of members) {
          if (!users.some((u) => u.id === other.user.userId && u.socketId === other.socket.id)) {
            throw new Error(`get online users on node ${'ABC'[i]} lacks ${other.user.userId}: ${JSON.stringify(users)}`);
          }
        }
        const info = await call(m.socket, 'get room info', roomId);
        if (info?.room?.userCount !== 3) throw new Error(`get room info on node ${'ABC'[i]}: ${JSON.stringify(info)}`);
        const listed = await call(m.socket, 'get rooms');
        if (listed?.rooms?.find((r) => r.id === roomId)?.userCount !== 3) throw new Error(`get rooms on node ${'ABC'[i]}: ${JSON.stringify(listed)}`);
      }
    });

    await eventually('private message C to A', 10_000, async () => {
      const seen = record(a.socket, 'private message');
      const ack = await call(c.socket, 'private message', { to: a.user.userId, content: 'after the outage' });
      if (!ack?.success) throw new Error(`ack ${JSON.stringify(ack)}`);
      await waitForEntries(seen, (m) => m?.id === ack.messageId, { ms: 1500, what: 'private message on node A' });
    });

    // The stats keys and the presence really are back in the new (empty) Redis.
    const db = await RespClient.connect(again.port);
    t.after(() => db.close());
    for (const id of cluster.ids) assert.equal(await db.command('EXISTS', `cluster:stats:${id}`), 1, `cluster:stats:${id} missing after the restart`);
    const stats = await clusterStats(A);
    assert.equal(stats.json?.nodes?.length, 3);
    t.diagnostic(`recovered ${Date.now() - outageEnded} ms after redis-server restarted; client disconnects during the outage: ${disconnects.map((d) => d.length).join(', ')}`);
    for (const [i, d] of disconnects.entries()) assert.equal(d.length, 0, `the client on node ${'ABC'[i]} was disconnected by the Redis outage: ${JSON.stringify(d)}`);
  });
});
