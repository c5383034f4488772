// docs/protocol.md, section "Namespaces and events": /chat and /game, both transports.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import {
  RFC3339, TRANSPORTS, barrier, closeAll, collect, connectUser, newUser, once, suiteGateway, test,
  waitFor, T,
} from './support/gateway.mjs';
import { expectAccepted, expectRejected } from './support/rules.mjs';

const newGameId = (() => {
  let n = 0;
  return () => `game-${process.pid}-${++n}`;
})();

// Once more with the node's state in Redis (game seq, presence), as a one-node cluster.
const VARIANTS = [...TRANSPORTS, { name: 'websocket, state in Redis', opts: { transports: ['websocket'] }, redis: true }];

for (const { name: tname, opts: transport, redis } of VARIANTS) {
  describe(`section 4: /chat [${tname}]`, () => {
    const gw = suiteGateway({ redis });
    const chat = (user) => connectUser(gw(), user, { namespace: '/chat', transport });
    const main = (user) => connectUser(gw(), user, { transport });

    test('chat message reaches other /chat sockets only (not /), sender excluded, ack with messageId', async () => {
      const a = await chat(newUser('cA'));
      const b = await chat(newUser('cB'));
      const onMain = await main(newUser('cMain'));
      const gotA = collect(a.socket, 'chat message');
      const gotMain = collect(onMain.socket, 'chat message');
      try {
        const got = once(b.socket, 'chat message', T);
        const ack = await expectAccepted(a.socket, 'chat message', { content: ' <em>hi</em> /chat spam ' });
        assert.equal(typeof ack.messageId, 'string');
        const msg = await got;
        assert.equal(msg.id, ack.messageId);
        assert.equal(msg.content, 'hi /chat ***');
        assert.equal(msg.type, 'text');
        assert.match(msg.timestamp, RFC3339);
        assert.equal(typeof msg.from, 'string');
        // The sender's next acked event comes after anything the server queued to it before.
        await expectAccepted(a.socket, 'chat message', { content: 'barrier' });
        assert.deepEqual(gotA, [], 'the sender received its own /chat message');
        await barrier(onMain.socket);
        assert.deepEqual(gotMain, [], 'a / socket received a /chat message');
      } finally {
        closeAll(a.socket, b.socket, onMain.socket);
      }
    });

    test('chat message validation is the same as on /', async () => {
      const a = await chat(newUser('cval'));
      try {
        for (const bad of [{ content: '' }, { content: 'q'.repeat(1001) }, { content: 'x', type: 'video' }]) {
          await expectRejected(a.socket, 'chat message', bad);
        }
      } finally {
        closeAll(a.socket);
      }
    });

    test('private message { to, content } reaches user:<to> in /chat only; sender gets message sent', async () => {
      const a = await chat(newUser('cpA'));
      const target = newUser('cpB');
      const b = await chat(target);
      const bMain = await main(target);
      const gotMain = collect(bMain.socket, 'private message');
      try {
        const got = once(b.socket, 'private message', T);
        const sent = once(a.socket, 'message sent', T);
        const ack = await expectAccepted(a.socket, 'private message', { to: target.userId, content: 'chat psst' });
        const msg = await got;
        assert.equal(msg.content, 'chat psst');
        assert.equal(msg.to, target.userId);
        assert.equal(msg.type, 'private');
        const s = await sent;
        assert.equal(typeof s.messageId, 'string');
        assert.equal(s.messageId, msg.id);
        assert.equal(ack.messageId, msg.id);
        await barrier(bMain.socket);
        assert.deepEqual(gotMain, [], 'a /chat private message reached the / namespace');
      } finally {
        closeAll(a.socket, b.socket, bMain.socket);
      }
    });

    test('private message without an ack still emits message sent', async () => {
      const a = await chat(newUser('cpnA'));
      const target = newUser('cpnB');
      const b = await chat(target);
      try {
        const got = once(b.socket, 'private message', T);
        const sent = once(a.socket, 'message sent', T);
        a.socket.emit('private message', { to: target.userId, content: 'no ack' });
        assert.equal((await sent).messageId, (await got).id);
      } finally {
        closeAll(a.socket, b.socket);
      }
    });
  });

  describe(`section 5: /game [${tname}]`, () => {
    const gw = suiteGateway({ redis });
    const player = (name) => connectUser(gw(), newUser(name), { namespace: '/game', transport });

    /**
     * `socket` joins `gameId` and proves it: its own probe action comes back as a game update
     * (events of one socket are handled in order, as on a socket.io server).
     */
    async function joinAndProbe(socket, gameId) {
      socket.emit('join game', gameId);
      const update = once(socket, 'game update', T);
      socket.emit('game action', { gameId, probe: socket.id });
      const u = await update;
      assert.equal(u.gameId, gameId, `probe answered for another game: ${JSON.stringify(u)}`);
      return u;
    }

    /** p1 joins (proved by its probe), then p2 joins (proved by p1's player joined). */
    async function twoPlayers(gameId) {
      const p1 = await player('p1');
      const p2 = await player('p2');
      await joinAndProbe(p1.socket, gameId);
      const joined = once(p1.socket, 'player joined', T);
      p2.socket.emit('join game', gameId);
      assert.deepEqual(await joined, { playerId: p2.socket.id, gameId });
      return [p1, p2];
    }

    test('join game: others get player joined { playerId: socketId, gameId }', async () => {
      const gameId = newGameId();
      const [p1, p2] = await twoPlayers(gameId);
      const p3 = await player('pj3');
      try {
        const seen = [once(p1.socket, 'player joined', T), once(p2.socket, 'player joined', T)];
        p3.socket.emit('join game', gameId);
        for (const ev of await Promise.all(seen)) assert.deepEqual(ev, { playerId: p3.socket.id, gameId });
      } finally {
        closeAll(p1.socket, p2.socket, p3.socket);
      }
    });

    test('game action: the whole game, sender included, gets game update with the payload and seq', async () => {
      const gameId = newGameId();
      const [p1, p2] = await twoPlayers(gameId);
      try {
        const u1 = once(p1.socket, 'game update', T);
        const u2 = once(p2.socket, 'game update', T);
        const action = { gameId, move: 'e2e4', nested: { piece: 'pawn' } };
        p1.socket.emit('game action', action);
        const [a, b] = [await u1, await u2];
        for (const u of [a, b]) {
          assert.equal(u.gameId, gameId);
          assert.equal(u.playerId, p1.socket.id);
          assert.deepEqual(u.action, action);
          assert.equal(typeof u.seq, 'number');
          assert.match(u.timestamp, RFC3339);
        }
        assert.equal(a.seq, b.seq);
      } finally {
        closeAll(p1.socket, p2.socket);
      }
    });

    test('seq increases by one per game with no gaps or repeats under concurrent actions; games are independent', async () => {
      const g = newGameId();
      const h = newGameId();
      const [p1, p2] = await twoPlayers(g);
      const [q1, q2] = await twoPlayers(h);
      const seen1 = collect(p1.socket, 'game update');
      const seen2 = collect(p2.socket, 'game update');
      const seenH = collect(q1.socket, 'game update');
      try {
        for (let i = 0; i < 25; i++) {
          p1.socket.emit('game action', { gameId: g, i, by: 1 });
          p2.socket.emit('game action', { gameId: g, i, by: 2 });
          q2.socket.emit('game action', { gameId: h, i });
        }
        await waitFor(() => seen1.length >= 50 && seen2.length >= 50 && seenH.length >= 25, 20_000, { what: '50 + 25 game updates' });
        const seqs = seen1.map((u) => u.seq);
        for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[0] + i, `seq ${JSON.stringify(seqs)}`);
        assert.deepEqual(seen2.map((u) => u.seq), seqs, 'both players must see the same seq order');
        assert.deepEqual(seen2.map((u) => u.action), seen1.map((u) => u.action));
        const hs = seenH.map((u) => u.seq);
        for (let i = 1; i < hs.length; i++) assert.equal(hs[i], hs[0] + i, `game ${h} seq ${JSON.stringify(hs)}`);
        assert.ok(seen1.every((u) => u.gameId === g) && seenH.every((u) => u.gameId === h));
      } finally {
        closeAll(p1.socket, p2.socket, q1.socket, q2.socket);
      }
    });

    test('an action from a non-member is not delivered and consumes no seq', async () => {
      const gameId = newGameId();
      const [p1, p2] = await twoPlayers(gameId);
      const outsider = await player('outsider');
      const seen = collect(p2.socket, 'game update');
      try {
        p1.socket.emit('game action', { gameId, n: 1 });
        await waitFor(() => seen.length === 1, T, { what: 'first update' });
        outsider.socket.emit('game action', { gameId, n: 'intruder' });
        outsider.socket.emit('game action', { gameId: 'g'.repeat(51), n: 'invalid id' });
        // The outsider then joins: p1 seeing that proves its earlier (in-order) actions were handled.
        const joined = once(p1.socket, 'player joined', T);
        outsider.socket.emit('join game', gameId);
        assert.equal((await joined).playerId, outsider.socket.id);
        p1.socket.emit('game action', { gameId, n: 2 });
        await waitFor(() => seen.length >= 2, T, { what: 'second update' });
        assert.deepEqual(seen.map((u) => u.action.n), [1, 2], 'an outsider action was delivered');
        assert.equal(seen[1].seq, seen[0].seq + 1, 'a rejected action consumed a seq');
      } finally {
        closeAll(p1.socket, p2.socket, outsider.socket);
      }
    });

    test('leave game: the leaver no longer gets updates and its actions are refused', async () => {
      const gameId = newGameId();
      const [p1, p2] = await twoPlayers(gameId);
      const seen1 = collect(p1.socket, 'game update');
      const seen2 = collect(p2.socket, 'game update');
      try {
        p2.socket.emit('leave game', gameId);
        p2.socket.emit('game action', { gameId, n: 'after leave' });
        // p2 rejoins; p1 seeing that proves the leave and the refused action were handled before.
        const rejoined = once(p1.socket, 'player joined', T);
        p2.socket.emit('join game', gameId);
        assert.equal((await rejoined).playerId, p2.socket.id);
        p1.socket.emit('game action', { gameId, n: 'final' });
        await waitFor(() => seen2.length >= 1 && seen1.length >= 1, T, { what: 'the final update' });
        assert.deepEqual(seen1.map((u) => u.action.n), ['final'], 'an action sent after leave game was delivered');
        assert.deepEqual(seen2.map((u) => u.action.n), ['final']);
      } finally {
        closeAll(p1.socket, p2.socket);
      }
    });

    test('disconnect: each game of the player gets player disconnected { playerId, gameId }', async () => {
      const g1 = newGameId();
      const g2 = newGameId();
      const [p1, p2] = await twoPlayers(g1);
      try {
        await joinAndProbe(p1.socket, g2);
        const joined = once(p1.socket, 'player joined', T);
        p2.socket.emit('join game', g2);
        assert.equal((await joined).gameId, g2);
        const gone = collect(p1.socket, 'player disconnected');
        const p2id = p2.socket.id;
        p2.socket.disconnect();
        await waitFor(() => gone.length >= 2, T, { what: 'player disconnected in both games' });
        assert.deepEqual(
          gone.map((e) => ({ playerId: e.playerId, gameId: e.gameId })).sort((x, y) => x.gameId.localeCompare(y.gameId)),
          [{ playerId: p2id, gameId: g1 }, { playerId: p2id, gameId: g2 }].sort((x, y) => x.gameId.localeCompare(y.gameId)),
        );
      } finally {
        closeAll(p1.socket, p2.socket);
      }
    });

    test('join game validation: an empty or 51-char gameId joins nothing', async () => {
      const p1 = await player('gv1');
      const updates = collect(p1.socket, 'game update');
      try {
        for (const bad of ['', 'g'.repeat(51)]) {
          p1.socket.emit('join game', bad);
          p1.socket.emit('game action', { gameId: bad, probe: 'invalid' });
        }
        const good = newGameId();
        await joinAndProbe(p1.socket, good);
        assert.deepEqual(updates.map((u) => u.gameId), [good], 'a join with an invalid gameId succeeded');
      } finally {
        closeAll(p1.socket);
      }
    });
  });
}

