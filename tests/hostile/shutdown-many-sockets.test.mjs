// Attack (or just success): a node holding thousands of sockets is told to stop. Its shutdown
// takes every socket out of the cluster-wide state (rooms, presence) while the namespaces still
// exist; done one socket at a time, a few Redis round trips each, it overran the grace period
// and the process was cut off with its users still listed as online cluster-wide.
//
// The sockets are cheap raw WebSockets of one user (so connecting them is not quadratic in
// `user online` frames), in rooms of three so each departure also leaves a room and tells its
// remaining members. Redis is reached through a proxy that delays every chunk by 2 ms each way,
// a network round trip between machines rather than loopback's few microseconds.
import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect } from 'node:net';
import { rawWebSocket } from '../e2e/support/raw.mjs';
import { RespClient, startRedis } from '../e2e/support/redis.mjs';
import { newRoomId, startGateway, tail, test, waitFor, T } from '../e2e/support/gateway.mjs';

const SOCKETS = 3000;
const ROOMS = SOCKETS / 3;
const GRACE_SECS = 10;
const IN_FLIGHT = 100;
const ONE_WAY_DELAY_MS = 2;

/** A TCP proxy to `port` that delays every chunk by `ms` in both directions, in order. */
async function delayingProxy(t, port, ms) {
  const conns = new Set();
  const server = createServer((down) => {
    const up = tcpConnect({ host: '127.0.0.1', port });
    conns.add(down).add(up);
    const pipe = (from, to) => from.on('data', (d) => setTimeout(() => to.destroyed || to.write(d), ms));
    pipe(down, up);
    pipe(up, down);
    for (const [a, b] of [[down, up], [up, down]]) {
      a.on('error', () => {});
      a.on('close', () => setTimeout(() => b.destroy(), ms));
    }
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  t.after(() => {
    for (const c of conns) c.destroy();
    server.close();
  });
  return server.address().port;
}

/** Emits `event` with an ack id on a raw socket and waits for the ack frame. */
async function emitWithAck(raw, id, event, payload) {
  const seen = raw.frames.length;
  raw.send(`42${id}${JSON.stringify([event, payload])}`);
  const prefix = `43${id}[`;
  const frame = await waitFor(() => raw.frames.slice(seen).find((f) => typeof f === 'string' && f.startsWith(prefix)), T, { what: `the ack of ${event}` });
  return JSON.parse(frame.slice(prefix.length - 1))[0];
}

async function inBatches(items, size, fn) {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

test(`a node with ${SOCKETS} sockets in ${ROOMS} rooms leaves the cluster state and exits within its grace period`, { timeout: 300_000 }, async (t) => {
  const redis = await startRedis(t);
  const viaNetwork = await delayingProxy(t, redis.port, ONE_WAY_DELAY_MS);
  // One user creates every room before anyone joins: lift the per-user bound on unjoined rooms.
  const gw = await startGateway(t, {
    args: ['--redis-url', `redis://127.0.0.1:${viaNetwork}`, '--drain-secs', '0', '--grace-secs', String(GRACE_SECS), '--max-unjoined-rooms-per-user', String(ROOMS)],
    env: { RUST_LOG: 'warn,gateway::shutdown=info' },
  });
  const token = gw.token({ userId: 'crowd', username: 'crowd' });
  const sockets = await inBatches(Array.from({ length: SOCKETS }, (_, i) => i), IN_FLIGHT, () => rawWebSocket(gw, { token }));
  t.after(() => sockets.forEach((s) => s.ws.terminate()));
  assert.ok(sockets.every((s) => s.frames.some((f) => typeof f === 'string' && f.startsWith('40{'))), 'every socket joined /');

  const rooms = Array.from({ length: ROOMS }, () => newRoomId('crowd'));
  await inBatches(rooms, IN_FLIGHT, async (roomId) => {
    const ack = await emitWithAck(sockets[rooms.indexOf(roomId)], 1, 'create room', { roomId, roomName: roomId, maxUsers: 1000 });
    assert.equal(ack.success, true, JSON.stringify(ack));
  });
  await inBatches(sockets, IN_FLIGHT, async (s) => {
    const ack = await emitWithAck(s, 2, 'join room', { roomId: rooms[sockets.indexOf(s) % ROOMS] });
    assert.equal(ack.success, true, JSON.stringify(ack));
  });

  // Cluster-wide state this node registered (key names: cluster/src/keys.rs, default prefix).
  const db = await RespClient.connect(redis.port);
  t.after(() => db.close());
  assert.equal(await db.command('HLEN', 'gateway:presence:sockets'), SOCKETS);

  const started = Date.now();
  process.kill(gw.pid, 'SIGTERM');
  const { code, signal } = await gw.exited;
  const elapsed = Date.now() - started;
  t.diagnostic(`shutdown with ${SOCKETS} sockets took ${elapsed} ms`);
  t.diagnostic(gw.stderr.split('\n').filter((l) => /shutdown|cluster state|closing/.test(l)).join('\n'));
  assert.equal(signal, null, `killed by ${signal}`);
  assert.equal(code, 0, tail(gw.stderr));
  assert.doesNotMatch(gw.stderr, /grace period exceeded/, 'the shutdown overran its grace period');
  assert.match(gw.stderr, /shutdown complete/);
  assert.ok(elapsed < GRACE_SECS * 1000, `exited after ${elapsed} ms`);

  // Everything was taken out of the cluster state by the node itself.
  assert.equal(await db.command('HLEN', 'gateway:presence:sockets'), 0, 'sockets still listed as online');
  for (const roomId of rooms.slice(0, 5)) {
    assert.equal(await db.command('EXISTS', `gateway:room:${roomId}`), 0, `room ${roomId} outlived its last member`);
  }
});
