// Issue 12, item 6 (and the resync retry of item 8): a ban outlives a Redis restart (the nodes
// that know it write it back), a node restart, and a node cut off from Redis while the
// `user_banned` notice went out; a failed re-registration after a Redis restart is retried.
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import { describe } from 'node:test';
import { client, closeAll, connectError, connectUser, http, newUser, once, startGateway, test, waitFor } from '../e2e/support/gateway.mjs';
import { RespClient, startRedis } from '../e2e/support/redis.mjs';

const admin = (gw) => gw.token({ userId: `admin-${process.pid}`, username: 'root', role: 'admin' });

async function ban(gw, userId, body = {}) {
  const r = await http(gw, '/api/ban', { method: 'POST', token: admin(gw), body: { userId, reason: 'hostile', ...body } });
  assert.equal(r.status, 200, r.text);
}

async function refused(gw, user) {
  const err = await connectError(client(gw, { token: gw.token(user) }));
  assert.match(err.message, /^Banned: hostile/);
}

async function ready(gw) {
  await waitFor(async () => (await http(gw, '/ready')).status === 200, 30_000, { interval: 200, what: '/ready 200' });
}

async function servesOthers(gw) {
  const ok = await connectUser(gw, newUser('fine'));
  closeAll(ok.socket);
}

/** A TCP relay to Redis that the test can cut (every connection dropped, new ones refused) and restore. */
async function relay(t, targetPort) {
  const open = new Set();
  let server;
  const listen = (port) =>
    new Promise((res, rej) => {
      server = createServer((down) => {
        const up = connect(targetPort, '127.0.0.1');
        open.add(down);
        open.add(up);
        const drop = () => {
          down.destroy();
          up.destroy();
          open.delete(down);
          open.delete(up);
        };
        for (const s of [down, up]) {
          s.on('error', drop);
          s.on('close', drop);
        }
        down.pipe(up);
        up.pipe(down);
      });
      server.once('error', rej);
      server.listen(port, '127.0.0.1', () => res(server.address().port));
    });
  const port = await listen(0);
  const cut = () =>
    new Promise((res) => {
      for (const s of open) s.destroy();
      open.clear();
      server.close(() => res());
    });
  t.after(cut);
  return { url: `redis://127.0.0.1:${port}`, cut, restore: () => listen(port) };
}

describe('bans that must not be forgotten', () => {
  test('a ban survives a Redis restart (written back by the node) and a node restart', async (t) => {
    const redis = await startRedis(t);
    const args = ['--redis-url', redis.url];
    const first = await startGateway(t, { args, serverId: `bans-a-${process.pid}` });
    const forever = newUser('victim');
    const timed = newUser('victim');
    await ban(first, forever.userId);
    await ban(first, timed.userId, { durationSecs: 3600 });
    await refused(first, forever);

    // The node that issued the bans restarts: the new process learns them from Redis...
    await first.stop();
    const second = await startGateway(t, { args, serverId: `bans-a-${process.pid}` });
    await ready(second);
    // ...so when Redis then restarts empty, it writes them back.
    await redis.stop();
    const again = await startRedis(t, { port: redis.port });
    const db = await RespClient.connect(again.port);
    t.after(() => db.close());
    await waitFor(async () => (await db.command('EXISTS', `gateway:ban:${forever.userId}`)) === 1, 30_000, {
      interval: 200,
      what: 'the permanent ban to be written back into the restarted Redis',
    });
    const ttl = Number(await db.command('PTTL', `gateway:ban:${timed.userId}`));
    assert.ok(ttl > 3_000_000 && ttl <= 3_600_000, `the timed ban keeps its expiry: ${ttl}`);
    await ready(second);
    await refused(second, forever);
    await refused(second, timed);
    // A node that joins later refuses the user too (the ban is in Redis again).
    const third = await startGateway(t, { args });
    await refused(third, forever);
    await servesOthers(second);
  });

  test('a node cut off while user_banned went out disconnects the user when it reconnects', async (t) => {
    const redis = await startRedis(t);
    const link = await relay(t, redis.port);
    const gw = await startGateway(t, { args: ['--redis-url', link.url] });
    await ready(gw);
    const victim = newUser('victim');
    const v = await connectUser(gw, victim);
    const banned = once(v.socket, 'banned', 30_000);
    const gone = once(v.socket, 'disconnect', 30_000);
    await link.cut();
    await waitFor(async () => (await http(gw, '/ready')).status === 503, 15_000, { interval: 100, what: 'the node to see Redis gone' });
    // Another node bans the user: the record and the notice reach Redis, not this node.
    const db = await RespClient.connect(redis.port);
    t.after(() => db.close());
    const record = { userId: victim.userId, reason: 'hostile', bannedBy: 'admin', createdAt: new Date().toISOString(), expiresAt: null };
    await db.command('SET', `gateway:ban:${victim.userId}`, JSON.stringify(record));
    const notice = { serverId: 'other-node', event: 'user_banned', data: { userId: victim.userId, reason: 'hostile' }, timestamp: new Date().toISOString() };
    await db.command('PUBLISH', 'cluster:message', JSON.stringify(notice));
    await link.restore();
    assert.deepEqual(await banned, { reason: 'hostile' });
    await gone;
    await ready(gw);
    await refused(gw, victim);
    await servesOthers(gw);
  });

  test('a re-registration that fails after a Redis restart is retried until it succeeds', async (t) => {
    const redis = await startRedis(t);
    const gw = await startGateway(t, { args: ['--redis-url', redis.url] });
    await ready(gw);
    const alice = await connectUser(gw, newUser('alice'));
    try {
      await redis.stop();
      // Redis comes back refusing every write (out of memory): the first re-registration fails.
      const again = await startRedis(t, { port: redis.port, args: ['--maxmemory', '1', '--maxmemory-policy', 'noeviction'] });
      await waitFor(() => /cannot re-register this node's state yet/.test(gw.stderr), 30_000, {
        interval: 100,
        what: 'a failed re-registration in the log',
      });
      const db = await RespClient.connect(again.port);
      t.after(() => db.close());
      await db.command('CONFIG', 'SET', 'maxmemory', '0');
      await waitFor(async () => (await db.command('HEXISTS', 'gateway:presence:sockets', alice.socket.id)) === 1, 30_000, {
        interval: 200,
        what: "alice's socket to be registered again once Redis accepts writes",
      });
      await servesOthers(gw);
    } finally {
      closeAll(alice.socket);
    }
  });
});
