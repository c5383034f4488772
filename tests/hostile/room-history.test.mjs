// Issue 12, item 1: a deleted private room's history must not be readable by whoever creates a
// room of the same id afterwards; a room's history goes with the room. Memory and Redis alike.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { closeAll, connectUser, http, newRoomId, newUser, once, suiteGateway, test } from '../e2e/support/gateway.mjs';
import { expectAccepted, expectRejected } from '../e2e/support/rules.mjs';

for (const redis of [false, true]) {
  describe(`history of a deleted room [${redis ? 'Redis' : 'memory'}]`, () => {
    const gw = suiteGateway({ redis });

    test('mallory re-creating a deleted private room id reads nothing of it', async () => {
      const roomId = newRoomId('hr');
      const alice = await connectUser(gw(), newUser('alice'));
      const bob = await connectUser(gw(), newUser('bob'));
      const mallory = await connectUser(gw(), newUser('mallory'));
      try {
        await expectAccepted(alice.socket, 'create room', { roomId, roomName: 'HR', isPrivate: true, password: 'pw-hr' });
        await expectAccepted(alice.socket, 'join room', { roomId, password: 'pw-hr' });
        await expectAccepted(bob.socket, 'join room', { roomId, password: 'pw-hr' });
        const got = once(bob.socket, 'room message');
        await expectAccepted(alice.socket, 'room message', { roomId, message: 'salary of bob: secret' });
        await got;
        // While the room exists, a non-member cannot read its history.
        await expectRejected(mallory.socket, 'room history', { roomId });
        await expectAccepted(alice.socket, 'leave room', roomId);
        await expectAccepted(bob.socket, 'leave room', roomId);

        await expectAccepted(mallory.socket, 'create room', { roomId, roomName: 'mine now' });
        const h = await expectAccepted(mallory.socket, 'room history', { roomId });
        assert.deepEqual(h.messages, [], `the old room's history leaked: ${JSON.stringify(h.messages)}`);

        // The node keeps serving: the new room works normally.
        await expectAccepted(mallory.socket, 'join room', { roomId });
        await expectAccepted(mallory.socket, 'room message', { roomId, message: 'hello' });
        const again = await expectAccepted(mallory.socket, 'room history', { roomId });
        assert.deepEqual(again.messages.map((m) => m.message), ['hello']);
        assert.equal((await http(gw(), '/health')).status, 200);
      } finally {
        closeAll(alice.socket, bob.socket, mallory.socket);
      }
    });
  });
}
