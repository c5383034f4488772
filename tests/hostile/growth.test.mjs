// Issue 12, item 7: no key or map a client can create grows without a bound or a TTL. Rooms and
// games per socket are capped; rooms nobody joins expire; a private message to a made-up user id
// stores nothing; histories and game counters in Redis carry a TTL.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { ask, closeAll, connectUser, http, newRoomId, newUser, once, startGateway, test, waitFor } from '../e2e/support/gateway.mjs';
import { RespClient, startRedis } from '../e2e/support/redis.mjs';
import { expectAccepted, expectRejected } from '../e2e/support/rules.mjs';

async function scanAll(db, pattern) {
  const keys = [];
  let cursor = '0';
  do {
    const [next, batch] = await db.command('SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000');
    cursor = String(next);
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

async function healthyAndServing(gw) {
  assert.equal((await http(gw, '/health')).status, 200);
  const carol = await connectUser(gw, newUser('carol'));
  try {
    const roomId = newRoomId('ok');
    await expectAccepted(carol.socket, 'create room', { roomId, roomName: 'fine' });
    await expectAccepted(carol.socket, 'join room', { roomId });
  } finally {
    closeAll(carol.socket);
  }
}

describe('bounded growth', () => {
  test('a socket may be in MAX_ROOMS_PER_SOCKET rooms and MAX_GAMES_PER_SOCKET games', async (t) => {
    const gw = await startGateway(t, { args: ['--max-rooms-per-socket', '3', '--max-games-per-socket', '2'] });
    const mallory = await connectUser(gw, newUser('mallory'));
    const game = await connectUser(gw, newUser('mallory'), { namespace: '/game' });
    try {
      const ids = [];
      for (let i = 0; i < 4; i += 1) {
        const roomId = newRoomId('cap');
        ids.push(roomId);
        await expectAccepted(mallory.socket, 'create room', { roomId, roomName: 'r' });
      }
      for (const roomId of ids.slice(0, 3)) await expectAccepted(mallory.socket, 'join room', { roomId });
      const roomError = once(mallory.socket, 'room error');
      const { ack } = await expectRejected(mallory.socket, 'join room', { roomId: ids[3] });
      assert.match(ack.error, /at most 3 rooms/);
      assert.match((await roomError).message, /at most 3 rooms/);
      // Joining a room it is in already is not a new room; leaving makes space.
      await expectAccepted(mallory.socket, 'join room', { roomId: ids[0] });
      await expectAccepted(mallory.socket, 'leave room', ids[0]);
      await expectAccepted(mallory.socket, 'join room', { roomId: ids[3] });

      await expectAccepted(game.socket, 'join game', 'g1');
      await expectAccepted(game.socket, 'join game', 'g2');
      const g = await expectRejected(game.socket, 'join game', 'g3');
      assert.match(g.ack.error, /at most 2 games/);
      await expectAccepted(game.socket, 'join game', 'g2');
      await expectAccepted(game.socket, 'leave game', 'g1');
      await expectAccepted(game.socket, 'join game', 'g3');
      const metrics = (await http(gw, '/metrics')).text;
      assert.match(metrics, /^socketio_state_limit_refusals_total 2$/m, 'both refusals are counted');
      await healthyAndServing(gw);
    } finally {
      closeAll(mallory.socket, game.socket);
    }
  });

  test('rooms nobody joins expire after UNJOINED_ROOM_TTL_SECS', async (t) => {
    const gw = await startGateway(t, { args: ['--unjoined-room-ttl-secs', '1'] });
    const mallory = await connectUser(gw, newUser('mallory'));
    try {
      const abandoned = newRoomId('abandoned');
      const used = newRoomId('used');
      await expectAccepted(mallory.socket, 'create room', { roomId: abandoned, roomName: 'a' });
      await expectAccepted(mallory.socket, 'create room', { roomId: used, roomName: 'u' });
      await expectAccepted(mallory.socket, 'join room', { roomId: used });
      await waitFor(async () => {
        const { rooms } = await ask(mallory.socket, 'get rooms');
        return !rooms.some((r) => r.id === abandoned) && rooms.some((r) => r.id === used);
      }, 10_000, { interval: 200, what: 'the never-joined room to expire' });
      await expectRejected(mallory.socket, 'join room', { roomId: abandoned }, { error: 'Room does not exist' });
      await healthyAndServing(gw);
    } finally {
      closeAll(mallory.socket);
    }
  });

  for (const redis of [false, true]) {
    test(`MAX_UNJOINED_ROOMS_PER_USER keeps one user from taking every room [${redis ? 'Redis' : 'memory'}]`, async (t) => {
      const gw = await startGateway(t, { redis, args: ['--max-unjoined-rooms-per-user', '2'] });
      const mallory = await connectUser(gw, newUser('mallory'));
      const bob = await connectUser(gw, newUser('bob'));
      try {
        const first = newRoomId('hoard');
        await expectAccepted(mallory.socket, 'create room', { roomId: first, roomName: 'h' });
        await expectAccepted(mallory.socket, 'create room', { roomId: newRoomId('hoard'), roomName: 'h' });
        const { ack } = await expectRejected(mallory.socket, 'create room', { roomId: newRoomId('hoard'), roomName: 'h' });
        assert.match(ack.error, /^Too many rooms of yours that nobody has joined yet \(at most 2\)/);
        await expectAccepted(bob.socket, 'create room', { roomId: newRoomId('bobs'), roomName: 'b' });
        // A room someone joined no longer counts against its creator.
        await expectAccepted(bob.socket, 'join room', { roomId: first });
        await expectAccepted(mallory.socket, 'create room', { roomId: newRoomId('hoard'), roomName: 'h' });
        assert.match((await http(gw, '/metrics')).text, /^socketio_state_limit_refusals_total 1$/m);
      } finally {
        closeAll(mallory.socket, bob.socket);
      }
    });

    test(`MAX_ROOMS bounds the rooms that exist, and expired rooms make space again [${redis ? 'Redis' : 'memory'}]`, async (t) => {
      const gw = await startGateway(t, { redis, args: ['--max-rooms', '3', '--unjoined-room-ttl-secs', '1'] });
      const mallory = await connectUser(gw, newUser('mallory'));
      try {
        for (let i = 0; i < 3; i += 1) {
          await expectAccepted(mallory.socket, 'create room', { roomId: newRoomId('flood'), roomName: 'f' });
        }
        const { ack } = await expectRejected(mallory.socket, 'create room', { roomId: newRoomId('flood'), roomName: 'f' });
        assert.equal(ack.error, 'Too many rooms exist (at most 3): try again later');
        assert.match((await http(gw, '/metrics')).text, /^socketio_state_limit_refusals_total 1$/m);
        await waitFor(async () => (await ask(mallory.socket, 'create room', { roomId: newRoomId('later'), roomName: 'l' })).success, 10_000, {
          interval: 200,
          what: 'room creation to work again once the unjoined rooms expired',
        });
        assert.equal((await http(gw, '/health')).status, 200);
      } finally {
        closeAll(mallory.socket);
      }
    });
  }

  test('Redis: private messages to made-up users store nothing; histories and game counters expire', async (t) => {
    const redis = await startRedis(t);
    const gw = await startGateway(t, { args: ['--redis-url', redis.url, '--history-ttl-secs', '100', '--game-seq-ttl-secs', '50'] });
    const db = await RespClient.connect(redis.port);
    t.after(() => db.close());
    const mallory = await connectUser(gw, newUser('mallory'));
    const chat = await connectUser(gw, newUser('mallory'), { namespace: '/chat' });
    const game = await connectUser(gw, newUser('mallory'), { namespace: '/game' });
    const bob = await connectUser(gw, newUser('bob'));
    try {
      for (let i = 0; i < 20; i += 1) {
        await expectRejected(chat.socket, 'private message', { to: `made-up-${i}`, content: 'hi' }, { error: 'User is offline' });
        await expectRejected(mallory.socket, 'private message', { to: `made-up-${i}`, content: 'hi' }, { error: 'User is offline' });
      }
      assert.deepEqual(await scanAll(db, '*made-up*'), [], 'a made-up recipient got a key');

      const roomId = newRoomId('ttl');
      await expectAccepted(mallory.socket, 'create room', { roomId, roomName: 'r' });
      await expectAccepted(mallory.socket, 'join room', { roomId });
      await expectAccepted(mallory.socket, 'room message', { roomId, message: 'm' });
      await expectAccepted(mallory.socket, 'private message', { to: bob.welcome.userId, content: 'hi bob' });
      await expectAccepted(game.socket, 'join game', 'ttl-game');
      await expectAccepted(game.socket, 'game action', { gameId: 'ttl-game', move: 1 });
      const histories = await scanAll(db, 'gateway:history:*');
      assert.ok(histories.length >= 2, `history keys: ${histories}`);
      for (const key of histories) {
        const ttl = Number(await db.command('PTTL', key));
        assert.ok(ttl > 0 && ttl <= 100_000, `${key} has TTL ${ttl}`);
      }
      const seqs = await scanAll(db, 'gateway:game:*');
      assert.equal(seqs.length, 1, `game keys: ${seqs}`);
      const ttl = Number(await db.command('PTTL', seqs[0]));
      assert.ok(ttl > 0 && ttl <= 50_000, `${seqs[0]} has TTL ${ttl}`);
      await healthyAndServing(gw);
    } finally {
      closeAll(mallory.socket, chat.socket, game.socket, bob.socket);
    }
  });
});
