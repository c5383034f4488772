// docs/protocol.md, section "Namespaces and events": the main namespace `/`, every row, success and failure paths, run once
// over WebSocket only and once over polling with upgrade; plus a polling-only flow.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import {
  RFC3339, TRANSPORTS, ask, barrier, client, closeAll, collect, connectUser, connected, newRoomId,
  newUser, once, startGateway, suiteGateway, test, waitFor, T,
} from './support/gateway.mjs';
import { rawWebSocket } from './support/raw.mjs';
import { assertNoSecrets, expectAccepted, expectRejected } from './support/rules.mjs';

// The same flows once more with the node's state in Redis (a one-node cluster).
const VARIANTS = [...TRANSPORTS, { name: 'websocket, state in Redis', opts: { transports: ['websocket'] }, redis: true }];

for (const { name: tname, opts: transport, redis } of VARIANTS) {
  describe(`section 3 [${tname}]`, () => {
    const gw = suiteGateway({ serverId: `main-ns-${tname.replace(/\W/g, '')}`, redis });
    const connect = (user, extra = {}) => connectUser(gw(), user, { transport, ...extra });

    async function roomWith(members, { roomId = newRoomId(), ...room } = {}) {
      await expectAccepted(members[0].socket, 'create room', { roomId, roomName: `Room ${roomId}`, ...room });
      for (const m of members) await expectAccepted(m.socket, 'join room', { roomId, password: room.password });
      return roomId;
    }

    if (tname === 'polling+upgrade') {
      test('the polling transport upgrades to websocket', async () => {
        const a = await connect(newUser('upg'));
        try {
          assert.equal(a.socket.io.engine.transport.name === 'polling' || a.socket.io.engine.transport.name === 'websocket', true);
          await waitFor(() => a.socket.io.engine.transport.name === 'websocket', 10_000, { what: 'the upgrade to websocket' });
          await expectAccepted(a.socket, 'get online users');
        } finally {
          closeAll(a.socket);
        }
      });

      test('messages in flight during the upgrade are neither lost nor reordered', async () => {
        const sender = await connect(newUser('inflightA'), { transport: { transports: ['websocket'] } });
        const user = newUser('inflightB');
        const token = gw().token(user);
        const receiver = client(gw(), { token });
        const got = collect(receiver, 'chat message');
        try {
          await connected(receiver);
          const sends = [];
          for (let i = 0; i < 30; i++) sends.push(ask(sender.socket, 'chat message', { content: `upgrade ${i}` }));
          for (const ack of await Promise.all(sends)) assert.equal(ack.success, true, JSON.stringify(ack));
          await waitFor(() => got.filter((m) => m.content.startsWith('upgrade ')).length >= 30, 10_000, { what: '30 messages' });
          await waitFor(() => receiver.io.engine.transport.name === 'websocket', 10_000, { what: 'the upgrade' });
          assert.deepEqual(
            got.filter((m) => m.content.startsWith('upgrade ')).map((m) => m.content),
            Array.from({ length: 30 }, (_, i) => `upgrade ${i}`),
          );
        } finally {
          closeAll(sender.socket, receiver);
        }
      });
    }

    test('welcome carries message, serverId, socketId, userId, username, timestamp', async () => {
      const user = newUser('welcome');
      const { socket, welcome } = await connect(user);
      try {
        assert.equal(typeof welcome.message, 'string');
        assert.ok(welcome.message.length > 0);
        assert.equal(welcome.serverId, gw().serverId);
        assert.equal(welcome.socketId, socket.id);
        assert.equal(welcome.userId, user.userId);
        assert.equal(welcome.username, user.username);
        assert.match(welcome.timestamp, RFC3339);
      } finally {
        closeAll(socket);
      }
    });

    test('the socket is in room user:<userId> (reached through /api/emit to that room)', async () => {
      const user = newUser('userroom');
      const a = await connect(user);
      const other = await connect(newUser('userroom-other'));
      const otherGot = collect(other.socket, 'e2e ping');
      try {
        const got = once(a.socket, 'e2e ping', T);
        const admin = gw().token(newUser('api', { role: 'admin' }));
        const res = await fetch(`${gw().url}/api/emit`, {
          method: 'POST',
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
          body: JSON.stringify({ room: `user:${user.userId}`, event: 'e2e ping', data: { n: 1 } }),
        });
        assert.ok(res.status >= 200 && res.status < 300, `POST /api/emit answered ${res.status}`);
        assert.deepEqual(await got, { n: 1 });
        await barrier(other.socket);
        assert.deepEqual(otherGot, []);
      } finally {
        closeAll(a.socket, other.socket);
      }
    });

    test('user online on the first socket only; user offline when the last socket leaves', async () => {
      const watcher = await connect(newUser('watcher'));
      const online = collect(watcher.socket, 'user online');
      const offline = collect(watcher.socket, 'user offline');
      const user = newUser('presence');
      const mine = (list) => list.filter((e) => e?.userId === user.userId);
      try {
        const first = await connect(user);
        await waitFor(() => mine(online).length === 1, T, { what: 'user online' });
        assert.deepEqual(mine(online)[0], { userId: user.userId, username: user.username });
        const second = await connect(user);
        first.socket.disconnect();
        await barrier(second.socket);
        await barrier(watcher.socket);
        assert.equal(mine(online).length, 1, 'a second socket of an online user must not announce it again');
        assert.equal(mine(offline).length, 0, 'user offline while the user still has a socket');
        second.socket.disconnect();
        await waitFor(() => mine(offline).length === 1, T, { what: 'user offline' });
        assert.deepEqual(mine(offline)[0], { userId: user.userId, username: user.username });
      } finally {
        closeAll(watcher.socket);
      }
    });

    test('the connecting user does not receive its own user online', async () => {
      const user = newUser('selfonline');
      const token = gw().token(user);
      const socket = client(gw(), { token, transport });
      const own = collect(socket, 'user online');
      try {
        await connected(socket);
        await barrier(socket);
        assert.deepEqual(own.filter((e) => e?.userId === user.userId), []);
      } finally {
        closeAll(socket);
      }
    });

    describe('chat message', () => {
      test('to everyone, sender excluded, with the full message shape and an ack with messageId', async () => {
        const a = await connect(newUser('chatA'));
        const b = await connect(newUser('chatB'));
        const gotA = collect(a.socket, 'chat message');
        try {
          const got = once(b.socket, 'chat message', T);
          const ack = await expectAccepted(a.socket, 'chat message', { content: 'hello everyone' });
          assert.equal(typeof ack.messageId, 'string');
          const msg = await got;
          assert.equal(msg.id, ack.messageId);
          assert.equal(msg.from, a.welcome.userId);
          assert.equal(msg.username, a.welcome.username);
          assert.equal(msg.content, 'hello everyone');
          assert.equal(msg.type, 'text');
          assert.match(msg.timestamp, RFC3339);
          assert.ok(!msg.roomId, `a message to everyone has no roomId: ${JSON.stringify(msg)}`);
          await barrier(a.socket);
          assert.deepEqual(gotA, [], 'the sender must not receive its own chat message');
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('is sanitised: tags removed, banned words starred case-insensitively, trimmed', async () => {
        const a = await connect(newUser('san'));
        const b = await connect(newUser('san'));
        try {
          const got = once(b.socket, 'chat message', T);
          await expectAccepted(a.socket, 'chat message', { content: '   <b>Hello</b> SPAM and <i>Abuse</i> inappropriate  ' });
          assert.equal((await got).content, 'Hello *** and *** ***');
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('type image and file are kept; an unknown type is rejected', async () => {
        const a = await connect(newUser('type'));
        const b = await connect(newUser('type'));
        try {
          for (const type of ['image', 'file']) {
            const got = once(b.socket, 'chat message', T);
            await expectAccepted(a.socket, 'chat message', { content: `a ${type}`, type });
            assert.equal((await got).type, type);
          }
          await expectRejected(a.socket, 'chat message', { content: 'x', type: 'video' });
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('validation: empty, over 1000 chars, empty after sanitising, non-string are rejected; 1000 chars pass', async () => {
        const a = await connect(newUser('val'));
        const b = await connect(newUser('val'));
        const gotB = collect(b.socket, 'chat message');
        try {
          for (const bad of [{ content: '' }, { content: 'x'.repeat(1001) }, { content: '<p></p>   ' }, { content: 42 }, {}, { content: ['a'] }]) {
            await expectRejected(a.socket, 'chat message', bad);
          }
          await barrier(b.socket);
          assert.deepEqual(gotB, [], 'a rejected chat message must not be delivered');
          const got = once(b.socket, 'chat message', T);
          await expectAccepted(a.socket, 'chat message', { content: 'y'.repeat(1000) });
          assert.equal((await got).content.length, 1000);
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('early form: a bare string is content, delivered with message equal to content', async () => {
        const a = await connect(newUser('bare'));
        const b = await connect(newUser('bare'));
        try {
          const got = once(b.socket, 'chat message', T);
          a.socket.emit('chat message', 'old style hello');
          const msg = await got;
          assert.equal(msg.content, 'old style hello');
          assert.equal(msg.message, 'old style hello');
          assert.equal(msg.from, a.welcome.userId);
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('with roomId: only room members receive it; a non-member sender is rejected', async () => {
        const a = await connect(newUser('rchat'));
        const b = await connect(newUser('rchat'));
        const outsider = await connect(newUser('rchat-out'));
        const outsiderGot = collect(outsider.socket, 'chat message');
        try {
          const roomId = await roomWith([a, b]);
          const got = once(b.socket, 'chat message', T);
          const ack = await expectAccepted(a.socket, 'chat message', { content: 'room only', roomId });
          const msg = await got;
          assert.equal(msg.roomId, roomId);
          assert.equal(msg.id, ack.messageId);
          await barrier(outsider.socket);
          assert.deepEqual(outsiderGot, [], 'a non-member received a room chat message');
          const gotB = collect(b.socket, 'chat message');
          await expectRejected(outsider.socket, 'chat message', { content: 'intruder', roomId });
          await barrier(b.socket);
          assert.deepEqual(gotB, []);
        } finally {
          closeAll(a.socket, b.socket, outsider.socket);
        }
      });
    });

    describe('private message', () => {
      test('{ to, content } reaches every socket of that user, sender excluded, ack with messageId', async () => {
        const a = await connect(newUser('pmA'));
        const target = newUser('pmB');
        const b1 = await connect(target);
        const b2 = await connect(target);
        const gotA = collect(a.socket, 'private message');
        try {
          const p1 = once(b1.socket, 'private message', T);
          const p2 = once(b2.socket, 'private message', T);
          const ack = await expectAccepted(a.socket, 'private message', { to: target.userId, content: 'psst <b>bold</b>' });
          assert.equal(typeof ack.messageId, 'string');
          for (const msg of [await p1, await p2]) {
            assert.equal(msg.id, ack.messageId);
            assert.equal(msg.from, a.welcome.userId);
            assert.equal(msg.to, target.userId);
            assert.equal(msg.content, 'psst bold');
            assert.equal(msg.type, 'private');
            assert.match(msg.timestamp, RFC3339);
          }
          await barrier(a.socket);
          assert.deepEqual(gotA, []);
        } finally {
          closeAll(a.socket, b1.socket, b2.socket);
        }
      });

      test('to a user with no socket: { success: false, error: "User is offline" }', async () => {
        const a = await connect(newUser('pmoff'));
        try {
          await expectRejected(a.socket, 'private message', { to: 'nobody-is-home', content: 'hello?' }, { error: 'User is offline' });
        } finally {
          closeAll(a.socket);
        }
      });

      test('validation: empty content, over 1000 chars, missing to are rejected', async () => {
        const a = await connect(newUser('pmval'));
        const b = await connect(newUser('pmval'));
        const gotB = collect(b.socket, 'private message');
        try {
          for (const bad of [{ to: b.welcome.userId, content: '' }, { to: b.welcome.userId, content: 'z'.repeat(1001) }, { content: 'who?' }]) {
            await expectRejected(a.socket, 'private message', bad);
          }
          await barrier(b.socket);
          assert.deepEqual(gotB, []);
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('early form { targetSocketId, message } reaches that socket only', async () => {
        const a = await connect(newUser('pmold'));
        const target = newUser('pmold-target');
        const b1 = await connect(target);
        const b2 = await connect(target);
        const gotB2 = collect(b2.socket, 'private message');
        try {
          const got = once(b1.socket, 'private message', T);
          a.socket.emit('private message', { targetSocketId: b1.socket.id, message: 'old style psst' });
          const msg = await got;
          assert.equal(msg.content, 'old style psst');
          assert.equal(msg.from, a.welcome.userId);
          await barrier(b2.socket);
          assert.deepEqual(gotB2, [], 'the early form targets one socket, not the user');
        } finally {
          closeAll(a.socket, b1.socket, b2.socket);
        }
      });
    });

    describe('set username', () => {
      test('changes the display name of this socket', async () => {
        const a = await connect(newUser('rename'));
        const b = await connect(newUser('rename'));
        try {
          const ack = await expectAccepted(a.socket, 'set username', 'Neo');
          assert.equal(ack.username, 'Neo');
          const got = once(b.socket, 'chat message', T);
          await expectAccepted(a.socket, 'chat message', { content: 'I know kung fu' });
          assert.equal((await got).username, 'Neo');
          assert.equal((await expectAccepted(a.socket, 'set username', 'x'.repeat(32))).username, 'x'.repeat(32));
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('validation: empty, 33 chars, non-string are rejected', async () => {
        const a = await connect(newUser('renameval'));
        try {
          for (const bad of ['', 'x'.repeat(33), 42, { username: 'obj' }]) {
            await expectRejected(a.socket, 'set username', bad);
          }
        } finally {
          closeAll(a.socket);
        }
      });
    });

    describe('create room', () => {
      test('registers the room; a second create is "Room already exists"', async () => {
        const a = await connect(newUser('create'));
        const roomId = newRoomId();
        try {
          const ack = await expectAccepted(a.socket, 'create room', { roomId, roomName: 'Lobby' });
          assert.equal(ack.roomId, roomId);
          await expectRejected(a.socket, 'create room', { roomId, roomName: 'Again' }, { error: 'Room already exists' });
          const info = await expectAccepted(a.socket, 'get room info', roomId);
          assert.equal(info.room.id, roomId);
          assert.equal(info.room.name, 'Lobby');
          assert.equal(info.room.maxUsers, 100, 'maxUsers defaults to 100');
        } finally {
          closeAll(a.socket);
        }
      });

      test('validation: roomId/roomName length, private without password, maxUsers range', async () => {
        const a = await connect(newUser('createval'));
        try {
          const bad = [
            { roomId: '', roomName: 'x' },
            { roomId: 'r'.repeat(51), roomName: 'x' },
            { roomId: newRoomId(), roomName: '' },
            { roomId: newRoomId(), roomName: 'n'.repeat(101) },
            { roomId: newRoomId() },
            { roomId: newRoomId(), roomName: 'secret', isPrivate: true },
            { roomId: newRoomId(), roomName: 'zero', maxUsers: 0 },
            { roomId: newRoomId(), roomName: 'huge', maxUsers: 1001 },
            { roomId: newRoomId(), roomName: 'frac', maxUsers: 2.5 },
            'just-a-string',
          ];
          for (const payload of bad) await expectRejected(a.socket, 'create room', payload);
          await expectAccepted(a.socket, 'create room', { roomId: newRoomId('max').padEnd(50, 'x'), roomName: 'n'.repeat(100), maxUsers: 1000 });
        } finally {
          closeAll(a.socket);
        }
      });
    });

    describe('join room / leave room', () => {
      test('join: others get user joined, the joiner gets room joined, ack { success, roomId }', async () => {
        const a = await connect(newUser('joinA'));
        const b = await connect(newUser('joinB'));
        const roomId = newRoomId();
        try {
          await expectAccepted(a.socket, 'create room', { roomId, roomName: 'Joinable' });
          const aJoined = once(a.socket, 'room joined', T);
          await expectAccepted(a.socket, 'join room', { roomId });
          const first = await aJoined;
          assert.equal(first.roomId, roomId);
          assert.equal(first.roomName, 'Joinable');
          assert.equal(first.userCount, 1);
          assert.deepEqual(first.users, [a.socket.id]);

          const userJoined = once(a.socket, 'user joined', T);
          const bJoined = once(b.socket, 'room joined', T);
          const ack = await expectAccepted(b.socket, 'join room', { roomId });
          assert.equal(ack.roomId, roomId);
          const uj = await userJoined;
          assert.deepEqual(
            { socketId: uj.socketId, userId: uj.userId, username: uj.username, roomId: uj.roomId, userCount: uj.userCount },
            { socketId: b.socket.id, userId: b.welcome.userId, username: b.welcome.username, roomId, userCount: 2 },
          );
          const rj = await bJoined;
          assert.equal(rj.userCount, 2);
          assert.deepEqual([...rj.users].sort(), [a.socket.id, b.socket.id].sort());
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('join a missing room: rejected and room error "Room does not exist"', async () => {
        const a = await connect(newUser('nojoin'));
        try {
          const roomError = once(a.socket, 'room error', T);
          await expectRejected(a.socket, 'join room', { roomId: newRoomId('missing') });
          assert.deepEqual(await roomError, { message: 'Room does not exist' });
        } finally {
          closeAll(a.socket);
        }
      });

      test('private room: wrong or missing password is "Wrong room password"; the right one joins; no payload leaks it', async () => {
        const a = await connect(newUser('pwA'));
        const b = await connect(newUser('pwB'));
        const roomId = newRoomId('private');
        const password = 'hunter2-correct-horse';
        const everything = [];
        for (const s of [a.socket, b.socket]) s.onAny((event, ...args) => everything.push({ event, args }));
        try {
          const created = await expectAccepted(a.socket, 'create room', { roomId, roomName: 'Vault', isPrivate: true, password });
          for (const wrong of [{ roomId, password: 'nope' }, { roomId }]) {
            const roomError = once(b.socket, 'room error', T);
            await expectRejected(b.socket, 'join room', wrong);
            assert.deepEqual(await roomError, { message: 'Wrong room password' });
          }
          const joinedAck = await expectAccepted(a.socket, 'join room', { roomId, password });
          const bAck = await expectAccepted(b.socket, 'join room', { roomId, password });
          const info = await expectAccepted(a.socket, 'get room info', roomId);
          const rooms = await expectAccepted(b.socket, 'get rooms');
          assert.ok(!rooms.rooms.some((r) => r.id === roomId), 'a private room must not be listed by get rooms');
          await barrier(a.socket);
          await barrier(b.socket);
          for (const payload of [created, joinedAck, bAck, info, rooms, everything]) assertNoSecrets(payload, password);
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('full room: "Room is full" once maxUsers members are in', async () => {
        const a = await connect(newUser('fullA'));
        const b = await connect(newUser('fullB'));
        const roomId = newRoomId('full');
        try {
          await expectAccepted(a.socket, 'create room', { roomId, roomName: 'Tiny', maxUsers: 1 });
          await expectAccepted(a.socket, 'join room', { roomId });
          const roomError = once(b.socket, 'room error', T);
          await expectRejected(b.socket, 'join room', { roomId });
          assert.deepEqual(await roomError, { message: 'Room is full' });
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('join validation: roomId empty or over 50 chars is rejected', async () => {
        const a = await connect(newUser('joinval'));
        try {
          for (const bad of [{ roomId: '' }, { roomId: 'j'.repeat(51) }, {}]) await expectRejected(a.socket, 'join room', bad);
        } finally {
          closeAll(a.socket);
        }
      });

      test('leave: the room gets user left with the new count; the last leave deletes the room', async () => {
        const a = await connect(newUser('leaveA'));
        const b = await connect(newUser('leaveB'));
        try {
          const roomId = await roomWith([a, b]);
          const left = once(a.socket, 'user left', T);
          const ack = await expectAccepted(b.socket, 'leave room', roomId);
          assert.equal(ack.roomId, roomId);
          const ul = await left;
          assert.deepEqual(
            { socketId: ul.socketId, userId: ul.userId, username: ul.username, roomId: ul.roomId, userCount: ul.userCount },
            { socketId: b.socket.id, userId: b.welcome.userId, username: b.welcome.username, roomId, userCount: 1 },
          );
          const gotB = collect(b.socket, 'chat message');
          await expectAccepted(a.socket, 'chat message', { content: 'after leave', roomId });
          await barrier(b.socket);
          assert.deepEqual(gotB, [], 'a socket that left still receives room messages');

          await expectAccepted(a.socket, 'leave room', roomId);
          const info = await expectAccepted(a.socket, 'get room info', roomId);
          assert.equal(info.room, null, 'the room must be deleted when its last member leaves');
          const rooms = await expectAccepted(a.socket, 'get rooms');
          assert.ok(!rooms.rooms.some((r) => r.id === roomId));
          await expectAccepted(a.socket, 'create room', { roomId, roomName: 'Reborn' });
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('leave validation: a roomId that is not a 1..50 character string is rejected', async () => {
        const a = await connect(newUser('leaveval'));
        try {
          for (const bad of [42, '', 'l'.repeat(51), { roomId: 'object' }]) await expectRejected(a.socket, 'leave room', bad);
        } finally {
          closeAll(a.socket);
        }
      });

      test('disconnect leaves every room: each room gets user left', async () => {
        const a = await connect(newUser('discA'));
        const b = await connect(newUser('discB'));
        try {
          const r1 = await roomWith([a, b]);
          const r2 = await roomWith([a, b]);
          const lefts = collect(a.socket, 'user left');
          b.socket.disconnect();
          await waitFor(() => lefts.length >= 2, T, { what: 'user left in both rooms' });
          assert.deepEqual(lefts.map((l) => l.roomId).sort(), [r1, r2].sort());
          for (const l of lefts) {
            assert.equal(l.userId, b.welcome.userId);
            assert.equal(l.userCount, 1);
          }
        } finally {
          closeAll(a.socket, b.socket);
        }
      });
    });

    describe('room message', () => {
      test('members get { from, username, message, roomId, timestamp }, sender excluded, ack { success }', async () => {
        const a = await connect(newUser('rmA'));
        const b = await connect(newUser('rmB'));
        const outsider = await connect(newUser('rmOut'));
        const gotA = collect(a.socket, 'room message');
        const gotOut = collect(outsider.socket, 'room message');
        try {
          const roomId = await roomWith([a, b]);
          const got = once(b.socket, 'room message', T);
          const ack = await expectAccepted(a.socket, 'room message', { roomId, message: 'hi room' });
          assert.equal(ack.success, true);
          const msg = await got;
          assert.equal(msg.from, a.welcome.userId);
          assert.equal(msg.username, a.welcome.username);
          assert.equal(msg.message, 'hi room');
          assert.equal(msg.roomId, roomId);
          assert.match(msg.timestamp, RFC3339);
          await barrier(a.socket);
          await barrier(outsider.socket);
          assert.deepEqual(gotA, []);
          assert.deepEqual(gotOut, []);
        } finally {
          closeAll(a.socket, b.socket, outsider.socket);
        }
      });

      test('a non-member and invalid messages are rejected', async () => {
        const a = await connect(newUser('rmvA'));
        const outsider = await connect(newUser('rmvOut'));
        const gotA = collect(a.socket, 'room message');
        try {
          const roomId = await roomWith([a]);
          await expectRejected(outsider.socket, 'room message', { roomId, message: 'let me in' });
          for (const bad of [{ roomId, message: '' }, { roomId, message: 'm'.repeat(1001) }, { roomId }]) {
            await expectRejected(a.socket, 'room message', bad);
          }
          await barrier(a.socket);
          assert.deepEqual(gotA, []);
        } finally {
          closeAll(a.socket, outsider.socket);
        }
      });
    });

    describe('room history', () => {
      test('oldest first, the most recent `limit` messages, members of a private room only', async () => {
        const a = await connect(newUser('histA'));
        const outsider = await connect(newUser('histOut'));
        try {
          const roomId = await roomWith([a], { isPrivate: true, password: 'pw-hist' });
          const ids = [];
          for (const content of ['one', 'two', 'three']) {
            ids.push((await expectAccepted(a.socket, 'chat message', { content, roomId })).messageId);
          }
          const all = await expectAccepted(a.socket, 'room history', { roomId });
          assert.deepEqual(all.messages.map((m) => m.id), ids);
          assert.deepEqual(all.messages.map((m) => m.content), ['one', 'two', 'three']);
          const m0 = all.messages[0];
          assert.equal(m0.from, a.welcome.userId);
          assert.equal(m0.roomId, roomId);
          assert.match(m0.timestamp, RFC3339);
          // docs/protocol.md (section "Namespaces and events"): `limit` keeps the latest messages.
          const last2 = await expectAccepted(a.socket, 'room history', { roomId, limit: 2 });
          assert.deepEqual(last2.messages.map((m) => m.content), ['two', 'three']);
          await expectRejected(outsider.socket, 'room history', { roomId });
          for (const limit of [0, 101]) await expectRejected(a.socket, 'room history', { roomId, limit });
        } finally {
          closeAll(a.socket, outsider.socket);
        }
      });

      test('a public room history is readable by anyone', async () => {
        const a = await connect(newUser('pubA'));
        const reader = await connect(newUser('pubReader'));
        try {
          const roomId = await roomWith([a]);
          await expectAccepted(a.socket, 'chat message', { content: 'public words', roomId });
          const h = await expectAccepted(reader.socket, 'room history', { roomId, limit: 100 });
          assert.deepEqual(h.messages.map((m) => m.content), ['public words']);
        } finally {
          closeAll(a.socket, reader.socket);
        }
      });
    });

    describe('get rooms / get room info / get online users', () => {
      test('get rooms lists public rooms with { id, name, userCount, maxUsers, createdAt }; without ack as room list', async () => {
        const a = await connect(newUser('list'));
        try {
          const roomId = await roomWith([a], { maxUsers: 7 });
          const { rooms } = await expectAccepted(a.socket, 'get rooms');
          const r = rooms.find((x) => x.id === roomId);
          assert.ok(r, `room ${roomId} missing from ${JSON.stringify(rooms)}`);
          assert.equal(r.name, `Room ${roomId}`);
          assert.equal(r.userCount, 1);
          assert.equal(r.maxUsers, 7);
          assert.ok(r.createdAt, 'createdAt missing');
          const listed = once(a.socket, 'room list', T);
          a.socket.emit('get rooms');
          const list = await listed;
          assert.ok(Array.isArray(list) && list.some((x) => x.id === roomId), JSON.stringify(list));
        } finally {
          closeAll(a.socket);
        }
      });

      test('get room info answers the room with its users, null when unknown; without ack as room info', async () => {
        const a = await connect(newUser('info'));
        const b = await connect(newUser('info'));
        try {
          const roomId = await roomWith([a, b], { maxUsers: 9 });
          const { room } = await expectAccepted(a.socket, 'get room info', roomId);
          assert.equal(room.id, roomId);
          assert.equal(room.name, `Room ${roomId}`);
          assert.equal(room.userCount, 2);
          assert.equal(room.maxUsers, 9);
          assert.ok(room.createdAt);
          assert.ok(Array.isArray(room.users));
          assert.equal(room.users.length, 2);
          const missing = await expectAccepted(a.socket, 'get room info', newRoomId('nope'));
          assert.equal(missing.room, null);
          const pushed = once(a.socket, 'room info', T);
          a.socket.emit('get room info', roomId);
          assert.equal((await pushed)?.id, roomId);
        } finally {
          closeAll(a.socket, b.socket);
        }
      });

      test('get online users lists { id: userId, username, socketId } of connected sockets', async () => {
        const a = await connect(newUser('online'));
        const b = await connect(newUser('online'));
        try {
          const { users } = await expectAccepted(a.socket, 'get online users');
          for (const x of [a, b]) {
            assert.ok(
              users.some((u) => u.id === x.welcome.userId && u.username === x.welcome.username && u.socketId === x.socket.id),
              `${x.welcome.userId} missing from ${JSON.stringify(users)}`,
            );
          }
          b.socket.disconnect();
          await waitFor(async () => !(await ask(a.socket, 'get online users')).users.some((u) => u.id === b.welcome.userId), T, {
            interval: 250,
            what: 'the disconnected user to leave the online list',
          });
        } finally {
          closeAll(a.socket, b.socket);
        }
      });
    });

    test('system message from /api/announce reaches every / socket', async () => {
      const a = await connect(newUser('sys'));
      const b = await connect(newUser('sys'));
      try {
        const got = [once(a.socket, 'system message', T), once(b.socket, 'system message', T)];
        const admin = gw().token(newUser('announcer', { role: 'admin' }));
        const res = await fetch(`${gw().url}/api/announce`, {
          method: 'POST',
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
          body: JSON.stringify({ message: 'maintenance at noon' }),
        });
        assert.ok(res.status >= 200 && res.status < 300, `POST /api/announce answered ${res.status}`);
        for (const m of await Promise.all(got)) {
          assert.equal(m.type, 'announcement');
          assert.equal(m.content, 'maintenance at noon');
          assert.equal(m.from, 'system');
          assert.match(m.timestamp, RFC3339);
        }
      } finally {
        closeAll(a.socket, b.socket);
      }
    });
  });
}

describe('section 3 [polling only]', () => {
  const gw = suiteGateway();
  const polling = { transports: ['polling'] };
  test('welcome, room join and room message round trip over long-polling without upgrade', async () => {
    const a = await connectUser(gw(), newUser('pollA'), { transport: polling });
    const b = await connectUser(gw(), newUser('pollB'), { transport: polling });
    try {
      assert.equal(a.socket.io.engine.transport.name, 'polling');
      const roomId = newRoomId('poll');
      await expectAccepted(a.socket, 'create room', { roomId, roomName: 'Polling' });
      await expectAccepted(a.socket, 'join room', { roomId });
      const joined = once(a.socket, 'user joined', T);
      await expectAccepted(b.socket, 'join room', { roomId });
      assert.equal((await joined).userId, b.welcome.userId);
      const got = once(b.socket, 'room message', T);
      await expectAccepted(a.socket, 'room message', { roomId, message: 'over xhr' });
      assert.equal((await got).message, 'over xhr');
      const chat = once(a.socket, 'chat message', T);
      await expectAccepted(b.socket, 'chat message', { content: 'back over xhr' });
      assert.equal((await chat).content, 'back over xhr');
      assert.equal(b.socket.io.engine.transport.name, 'polling');
    } finally {
      closeAll(a.socket, b.socket);
    }
  });
});

describe('section 3: per-socket event rate limit', () => {
  test('events over the bucket are rejected with "Rate limit exceeded"', async (t) => {
    const gw = await startGateway(t, { args: ['--event-rate-limit', '2', '--event-rate-burst', '3'] });
    const a = await connectUser(gw, newUser('bucket'), { transport: { transports: ['websocket'] } });
    const errors = collect(a.socket, 'error');
    try {
      const acks = await Promise.all(
        Array.from({ length: 8 }, (_, i) => ask(a.socket, 'chat message', { content: `burst ${i}` }).catch((e) => ({ timeout: e.message }))),
      );
      const limited = acks.filter((x) => x?.success === false && x.error === 'Rate limit exceeded');
      assert.ok(acks.filter((x) => x?.success === true).length >= 1, `no event passed: ${JSON.stringify(acks)}`);
      assert.ok(limited.length >= 1, `no event was rate limited: ${JSON.stringify(acks)}`);
      await waitFor(() => errors.some((e) => e?.message === 'Rate limit exceeded'), T, { what: 'an error event "Rate limit exceeded"' });
    } finally {
      closeAll(a.socket);
    }
  });

  test('a socket that keeps flooding is disconnected; others are unaffected', async (t) => {
    const gw = await startGateway(t, { args: ['--event-rate-limit', '2', '--event-rate-burst', '3'] });
    const flooder = await connectUser(gw, newUser('flood'), { transport: { transports: ['websocket'] } });
    const calm = await connectUser(gw, newUser('calm'), { transport: { transports: ['websocket'] } });
    try {
      const gone = once(flooder.socket, 'disconnect', 15_000);
      for (let i = 0; i < 500 && flooder.socket.connected; i++) flooder.socket.emit('chat message', { content: `flood ${i}` });
      const reason = await gone;
      // Server-side disconnect: a socket.io DISCONNECT packet or the transport closed by the server.
      assert.ok(['io server disconnect', 'transport close'].includes(reason), `disconnect reason ${reason}`);
      await expectAccepted(calm.socket, 'chat message', { content: 'still fine' });
    } finally {
      closeAll(flooder.socket, calm.socket);
    }
  });
});

describe('section 3: exactly one ack per event (raw Socket.IO frames)', () => {
  const gw = suiteGateway();
  test('success and failure paths each answer one ACK packet with the event id', async () => {
    const raw = await rawWebSocket(gw(), { token: gw().token(newUser('rawack')) });
    const sent = {
      1: ['get online users'],
      2: ['chat message', { content: '' }],
      3: ['chat message', { content: 'one ack please' }],
      4: ['join room', { roomId: newRoomId('missing') }],
      5: ['create room', { roomId: newRoomId('ack'), roomName: 'Ack' }],
    };
    try {
      for (const [id, args] of Object.entries(sent)) raw.send(`42${id}${JSON.stringify(args)}`);
      const ackIds = () => raw.frames.filter((f) => typeof f === 'string').map((f) => f.match(/^43(\d+)\[/)?.[1]).filter(Boolean);
      await waitFor(() => ['1', '2', '3', '4', '5'].every((id) => ackIds().includes(id)), T, { what: `acks 1-5; frames ${JSON.stringify(raw.frames)}` });
      raw.send('426["get online users"]');
      await waitFor(() => ackIds().includes('6'), T, { what: 'the barrier ack' });
      for (const id of ['1', '2', '3', '4', '5']) {
        assert.equal(ackIds().filter((x) => x === id).length, 1, `event ${id} (${sent[id][0]}) was acked ${ackIds().filter((x) => x === id).length} times`);
      }
      const ack = (id) => JSON.parse(raw.frames.find((f) => typeof f === 'string' && f.startsWith(`43${id}[`)).slice(`43${id}`.length))[0];
      assert.equal(ack(1).success, true);
      assert.equal(ack(2).success, false);
      assert.equal(ack(3).success, true);
      assert.equal(ack(4).success, false);
      assert.equal(ack(5).success, true);
    } finally {
      raw.ws.terminate();
    }
  });
});
