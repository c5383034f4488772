// Issue 12, item 2: room ids are client-chosen and may hold any character (docs/protocol.md,
// section "Namespaces and events"),
// so an id that looks like another key (`x:members`) must be a room of its own, and must not
// break `get rooms` or `join room` for anyone, in memory and with the state in Redis.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { ask, closeAll, connectUser, http, newUser, suiteGateway, test } from '../e2e/support/gateway.mjs';
import { expectAccepted } from '../e2e/support/rules.mjs';

for (const redis of [false, true]) {
  describe(`room ids that look like Redis keys [${redis ? 'Redis' : 'memory'}]`, () => {
    const gw = suiteGateway({ redis });

    test('x, x:members and x:member are three rooms; listing and joining keep working', async () => {
      const base = `x${process.pid}${redis ? 'r' : 'm'}`;
      const ids = [base, `${base}:members`, `${base}:member`, `${base}%3Amembers`, `{${base}}`, `${base}*`];
      const mallory = await connectUser(gw(), newUser('mallory'));
      const alice = await connectUser(gw(), newUser('alice'));
      try {
        for (const roomId of ids) {
          await expectAccepted(mallory.socket, 'create room', { roomId, roomName: `n ${roomId}` });
        }
        await expectAccepted(alice.socket, 'join room', { roomId: base });
        await expectAccepted(alice.socket, 'join room', { roomId: `${base}:members` });
        const list = await expectAccepted(alice.socket, 'get rooms');
        const ours = list.rooms.filter((r) => ids.includes(r.id));
        assert.deepEqual(ours.map((r) => r.id).sort(), [...ids].sort(), JSON.stringify(list));
        assert.equal(ours.find((r) => r.id === base).userCount, 1);
        assert.equal(ours.find((r) => r.id === `${base}:members`).userCount, 1);
        assert.equal(ours.find((r) => r.id === `${base}:member`).userCount, 0);
        const info = await expectAccepted(alice.socket, 'get room info', base);
        assert.deepEqual(info.room.users, [alice.socket.id]);
        // A well-behaved newcomer is served meanwhile.
        const bob = await connectUser(gw(), newUser('bob'));
        try {
          await expectAccepted(bob.socket, 'join room', { roomId: base });
          assert.equal((await ask(bob.socket, 'get rooms')).success, true);
        } finally {
          closeAll(bob.socket);
        }
        assert.equal((await http(gw(), '/health')).status, 200);
      } finally {
        closeAll(mallory.socket, alice.socket);
      }
    });
  });
}
