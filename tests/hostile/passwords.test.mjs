// Issue 12, item 8 (passwords): wrong room passwords cost the node argon2 time. One user's
// sockets get one check at a time, failures are limited per user and per room, and a
// well-behaved user still joins her own private room while an attacker hammers another.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { ask, closeAll, connectUser, http, newRoomId, newUser, startGateway, test } from '../e2e/support/gateway.mjs';
import { expectAccepted, expectRejected } from '../e2e/support/rules.mjs';
import { startCluster } from '../e2e-cluster/support/cluster.mjs';

describe('room password guessing', () => {
  test('ROOM_PASSWORD_FAILURES_PER_USER wrong passwords lock that user out, not others', async (t) => {
    const gw = await startGateway(t, { args: ['--room-password-failures-per-user', '3', '--room-password-failures-per-room', '100'] });
    const owner = await connectUser(gw, newUser('owner'));
    const mallory = await connectUser(gw, newUser('mallory'));
    const alice = await connectUser(gw, newUser('alice'));
    try {
      const roomId = newRoomId('vault');
      await expectAccepted(owner.socket, 'create room', { roomId, roomName: 'v', isPrivate: true, password: 'right' });
      for (let i = 0; i < 3; i += 1) {
        await expectRejected(mallory.socket, 'join room', { roomId, password: `guess-${i}` }, { error: 'Wrong room password' });
      }
      // Even the right password is refused now, without hashing: the guessing is over.
      const { ack } = await expectRejected(mallory.socket, 'join room', { roomId, password: 'right' });
      assert.match(ack.error, /^Too many wrong room passwords: try again in \d+ s$/);
      assert.match((await http(gw, '/metrics')).text, /^socketio_state_limit_refusals_total 1$/m);
      await expectAccepted(alice.socket, 'join room', { roomId, password: 'right' });
      assert.equal((await http(gw, '/health')).status, 200);
    } finally {
      closeAll(owner.socket, mallory.socket, alice.socket);
    }
  });

  test('ROOM_PASSWORD_FAILURES_PER_ROOM wrong passwords close the room to password attempts', async (t) => {
    const gw = await startGateway(t, { args: ['--room-password-failures-per-user', '100', '--room-password-failures-per-room', '2'] });
    const owner = await connectUser(gw, newUser('owner'));
    const guessers = await Promise.all([0, 1].map(() => connectUser(gw, newUser('guesser'))));
    const late = await connectUser(gw, newUser('late'));
    try {
      const roomId = newRoomId('vault');
      const other = newRoomId('other');
      await expectAccepted(owner.socket, 'create room', { roomId, roomName: 'v', isPrivate: true, password: 'right' });
      await expectAccepted(owner.socket, 'create room', { roomId: other, roomName: 'o', isPrivate: true, password: 'pw2' });
      for (const g of guessers) {
        await expectRejected(g.socket, 'join room', { roomId, password: 'nope' }, { error: 'Wrong room password' });
      }
      const { ack } = await expectRejected(late.socket, 'join room', { roomId, password: 'right' });
      assert.match(ack.error, /^Too many wrong passwords for this room: try again in \d+ s$/);
      await expectAccepted(late.socket, 'join room', { roomId: other, password: 'pw2' });
    } finally {
      closeAll(owner.socket, late.socket, ...guessers.map((g) => g.socket));
    }
  });

  test('failures are counted cluster-wide: guesses spread over two nodes hit one limit, on both nodes', async (t) => {
    const cluster = await startCluster(t, {
      nodes: 2,
      args: ['--room-password-failures-per-user', '100', '--room-password-failures-per-room', '4'],
    });
    const [A, B] = cluster.nodes;
    const owner = await connectUser(A, newUser('owner'));
    const onA = await connectUser(A, newUser('guesserA'));
    const onB = await connectUser(B, newUser('guesserB'));
    try {
      const roomId = newRoomId('vault');
      await expectAccepted(owner.socket, 'create room', { roomId, roomName: 'v', isPrivate: true, password: 'right' });
      for (let i = 0; i < 2; i += 1) {
        await expectRejected(onA.socket, 'join room', { roomId, password: `a-${i}` }, { error: 'Wrong room password' });
        await expectRejected(onB.socket, 'join room', { roomId, password: `b-${i}` }, { error: 'Wrong room password' });
      }
      // Two failures on each node, four in all: the room is closed to password attempts everywhere.
      for (const guesser of [onA, onB]) {
        const { ack } = await expectRejected(guesser.socket, 'join room', { roomId, password: 'right' });
        assert.match(ack.error, /^Too many wrong passwords for this room: try again in \d+ s$/);
      }
    } finally {
      closeAll(owner.socket, onA.socket, onB.socket);
    }
  });

  test("one user's many sockets get one check at a time; a well-behaved user still gets in", async (t) => {
    const gw = await startGateway(t, { args: ['--room-password-failures-per-user', '5'] });
    const owner = await connectUser(gw, newUser('owner'));
    const alice = await connectUser(gw, newUser('alice'));
    const mallory = newUser('mallory');
    const sockets = await Promise.all(Array.from({ length: 6 }, () => connectUser(gw, mallory)));
    try {
      const target = newRoomId('target');
      const mine = newRoomId('alices');
      await expectAccepted(owner.socket, 'create room', { roomId: target, roomName: 't', isPrivate: true, password: 'secret' });
      await expectAccepted(owner.socket, 'create room', { roomId: mine, roomName: 'a', isPrivate: true, password: 'alice-pw' });
      const storm = sockets.flatMap(({ socket }) =>
        Array.from({ length: 5 }, (_, i) => ask(socket, 'join room', { roomId: target, password: `g${i}` })),
      );
      const join = expectAccepted(alice.socket, 'join room', { roomId: mine, password: 'alice-pw' });
      const answers = await Promise.all(storm);
      await join;
      assert.ok(answers.every((a) => a.success === false), JSON.stringify(answers));
      const hashed = answers.filter((a) => a.error === 'Wrong room password').length;
      assert.ok(hashed >= 1 && hashed <= 5, `mallory got ${hashed} passwords checked out of 30`);
      for (const a of answers.filter((x) => x.error !== 'Wrong room password')) {
        assert.match(a.error, /still running|Too many wrong room passwords/);
      }
      assert.equal((await http(gw, '/health')).status, 200);
    } finally {
      closeAll(owner.socket, alice.socket, ...sockets.map((s) => s.socket));
    }
  });
});
