// docs/protocol.md, section "Namespaces and events": the /admin namespace (role admin), both transports.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import {
  RFC3339, TRANSPORTS, ask, barrier, client, closeAll, collect, connectUser, connected, newRoomId,
  newUser, once, startGateway, test, waitFor, T,
} from './support/gateway.mjs';
import { expectAccepted } from './support/rules.mjs';

/** Tries to connect `user` to `/` and returns the connect_error message, or null when admitted. */
async function admission(gw, user, namespace = '/') {
  const s = client(gw, { namespace, token: gw.token(user), transports: ['websocket'] });
  try {
    await connected(s);
    return null;
  } catch (e) {
    return e.message.replace(/^connect_error: /, '');
  } finally {
    closeAll(s);
  }
}

const VARIANTS = [...TRANSPORTS, { name: 'websocket, state in Redis', opts: { transports: ['websocket'] }, redis: true }];

for (const { name: tname, opts: transport, redis } of VARIANTS) {
  describe(`section 6: /admin [${tname}]`, () => {
    const admin = (gw) => connectUser(gw, newUser('admin', { role: 'admin' }), { namespace: '/admin', transport });

    test('get stats: counts per namespace, rooms and this node, as event and as ack', async (t) => {
      const gw = await startGateway(t, { serverId: `admin-stats-${tname.replace(/\W/g, '')}`, redis });
      const adm = await admin(gw);
      const m1 = await connectUser(gw, newUser('s1'), { transport });
      const m2 = await connectUser(gw, newUser('s2'), { transport });
      const c1 = await connectUser(gw, newUser('s3'), { namespace: '/chat', transport });
      const g1 = await connectUser(gw, newUser('s4'), { namespace: '/game', transport });
      const roomId = newRoomId('statsroom');
      try {
        await expectAccepted(m1.socket, 'create room', { roomId, roomName: 'Stats Room' });
        await expectAccepted(m1.socket, 'join room', { roomId });
        const pushed = once(adm.socket, 'stats', T);
        adm.socket.emit('get stats');
        const stats = await pushed;
        assert.equal(stats.chatConnections, 1, JSON.stringify(stats));
        assert.equal(stats.gameConnections, 1, JSON.stringify(stats));
        assert.equal(stats.adminConnections, 1, JSON.stringify(stats));
        // Silent whether totalConnections counts / only or every namespace: at least the two / sockets.
        assert.ok(Number.isInteger(stats.totalConnections) && stats.totalConnections >= 2, JSON.stringify(stats));
        assert.ok(Array.isArray(stats.rooms), JSON.stringify(stats));
        assert.ok(stats.rooms.includes('Stats Room') || stats.rooms.includes(roomId), `rooms ${JSON.stringify(stats.rooms)}`);
        assert.ok(Array.isArray(stats.nodes) && stats.nodes.length === 1, JSON.stringify(stats.nodes));
        assert.equal(stats.nodes[0].serverId, gw.serverId);
        const acked = await ask(adm.socket, 'get stats');
        const ackedStats = acked?.stats ?? acked;
        assert.equal(ackedStats.chatConnections, 1, `ack ${JSON.stringify(acked)}`);
        assert.equal(ackedStats.gameConnections, 1);
        g1.socket.disconnect();
        await waitFor(async () => {
          const a = await ask(adm.socket, 'get stats');
          return (a?.stats ?? a).gameConnections === 0;
        }, T, { interval: 250, what: 'gameConnections back to 0' });
      } finally {
        closeAll(adm.socket, m1.socket, m2.socket, c1.socket, g1.socket);
      }
    });

    test('broadcast message: every / socket gets system message; /chat sockets do not', async (t) => {
      const gw = await startGateway(t, { redis });
      const adm = await admin(gw);
      const a = await connectUser(gw, newUser('b1'), { transport });
      const b = await connectUser(gw, newUser('b2'), { transport });
      const c = await connectUser(gw, newUser('b3'), { namespace: '/chat', transport });
      const gotChat = collect(c.socket, 'system message');
      try {
        const got = [once(a.socket, 'system message', T), once(b.socket, 'system message', T)];
        adm.socket.emit('broadcast message', { message: 'hello all nodes' });
        for (const m of await Promise.all(got)) {
          assert.equal(m.type, 'announcement');
          assert.equal(m.content, 'hello all nodes');
          assert.equal(m.from, 'system');
          assert.match(m.timestamp, RFC3339);
        }
        await expectAccepted(c.socket, 'chat message', { content: 'barrier' });
        assert.deepEqual(gotChat, []);
      } finally {
        closeAll(adm.socket, a.socket, b.socket, c.socket);
      }
    });

    test('kick user: that socket gets kicked { reason: "Kicked by admin" } and is disconnected; its sibling stays', async (t) => {
      const gw = await startGateway(t, { redis });
      const adm = await admin(gw);
      const user = newUser('kickme');
      const victim = await connectUser(gw, user, { transport });
      const sibling = await connectUser(gw, user, { transport });
      try {
        const kicked = once(victim.socket, 'kicked', T);
        const gone = once(victim.socket, 'disconnect', T);
        adm.socket.emit('kick user', victim.socket.id);
        assert.deepEqual(await kicked, { reason: 'Kicked by admin' });
        assert.equal(await gone, 'io server disconnect');
        await barrier(sibling.socket);
        assert.equal(sibling.socket.connected, true, 'kick must only hit the given socket');
      } finally {
        closeAll(adm.socket, victim.socket, sibling.socket);
      }
    });

    test('ban user: every socket of the user gets banned { reason } and is disconnected; new connections refused', async (t) => {
      const gw = await startGateway(t, { redis });
      const adm = await admin(gw);
      const user = newUser('banme');
      const s1 = await connectUser(gw, user, { transport });
      const s2 = await connectUser(gw, user, { namespace: '/chat', transport });
      const bystander = await connectUser(gw, newUser('bystander'), { transport });
      try {
        const banned = [once(s1.socket, 'banned', T), once(s2.socket, 'banned', T)];
        const gone = [once(s1.socket, 'disconnect', T), once(s2.socket, 'disconnect', T)];
        adm.socket.emit('ban user', { userId: user.userId, reason: 'spamming the lobby' });
        for (const b of await Promise.all(banned)) assert.deepEqual(b, { reason: 'spamming the lobby' });
        for (const r of await Promise.all(gone)) assert.equal(r, 'io server disconnect');
        assert.equal(await admission(gw, user), 'Banned: spamming the lobby');
        assert.equal(await admission(gw, user, '/game'), 'Banned: spamming the lobby');
        assert.equal(bystander.socket.connected, true);
        assert.equal(await admission(gw, newUser('innocent')), null);
        adm.socket.emit('unban user', user.userId);
        await waitFor(async () => (await admission(gw, user)) === null, T, { what: 'unban user to lift the ban' });
      } finally {
        closeAll(adm.socket, s1.socket, s2.socket, bystander.socket);
      }
    });
  });
}

describe('section 6: bad admin input', () => {
  test('kick of an unknown socket and bans without a userId harm nobody; the admin socket stays usable', async (t) => {
    const gw = await startGateway(t);
    const adm = await connectUser(gw, newUser('admin', { role: 'admin' }), { namespace: '/admin' });
    const user = newUser('bystander');
    const a = await connectUser(gw, user);
    const kicked = collect(a.socket, 'kicked');
    const banned = collect(a.socket, 'banned');
    try {
      adm.socket.emit('kick user', 'no-such-socket-id');
      adm.socket.emit('kick user', { socketId: 42 });
      adm.socket.emit('ban user', {});
      adm.socket.emit('ban user', 'not an object');
      adm.socket.emit('unban user', { nested: true });
      adm.socket.emit('broadcast message', {});
      const stats = await ask(adm.socket, 'get stats');
      assert.ok(stats, 'the admin socket stopped answering');
      await barrier(a.socket);
      assert.deepEqual(kicked, []);
      assert.deepEqual(banned, []);
      assert.equal(a.socket.connected, true);
      assert.equal(await admission(gw, user), null, 'a user got banned by a ban without userId');
    } finally {
      closeAll(adm.socket, a.socket);
    }
  });
});

describe('section 6: ban duration and defaults', () => {
  for (const redis of [false, true]) {
    test(`a ban with durationSecs expires; until then connections are refused${redis ? ' (state in Redis)' : ''}`, async (t) => {
      const gw = await startGateway(t, { redis });
      const adm = await connectUser(gw, newUser('admin', { role: 'admin' }), { namespace: '/admin' });
      const user = newUser('tempban');
      try {
        adm.socket.emit('ban user', { userId: user.userId, reason: 'cool off', durationSecs: 2 });
        await waitFor(async () => (await admission(gw, user)) === 'Banned: cool off', 3000, { what: 'the ban to apply' });
        const bannedAt = Date.now();
        await waitFor(async () => (await admission(gw, user)) === null, 10_000, { interval: 200, what: 'the 2 s ban to expire' });
        assert.ok(Date.now() - bannedAt >= 800, 'the ban lifted far too early');
      } finally {
        closeAll(adm.socket);
      }
    });
  }

  test('a ban without a reason still refuses with "Banned: ..."', async (t) => {
    const gw = await startGateway(t);
    const adm = await connectUser(gw, newUser('admin', { role: 'admin' }), { namespace: '/admin' });
    const user = newUser('noreason');
    try {
      adm.socket.emit('ban user', { userId: user.userId });
      const msg = await waitFor(async () => {
        const m = await admission(gw, user);
        return m?.startsWith('Banned:') ? m : null;
      }, 3000, { what: 'the ban to apply' });
      assert.match(msg, /^Banned: \S/);
    } finally {
      closeAll(adm.socket);
    }
  });
});

