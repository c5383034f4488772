// Three gateway processes on one redis-server, driven by socket.io-client 4.8: every cross-node
// behaviour of docs/protocol.md ("cluster-wide" everywhere). Each user sits on a chosen
// node; every assertion is about an effect that must cross from one process to another.
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { barrier, connectError, client, http, newRoomId, newUser, once, RFC3339, runGatewayToExit, test, waitFor } from '../e2e/support/gateway.mjs';
import { call, classicSubscribers, clusterStats, userOn, record, RespClient, startCluster, waitForEntries, waitForStatsIds, watchControlBus } from './support/cluster.mjs';

const STATS_TTL = 3;
// "Within one stats heartbeat" of a change: the TTL bounds the heartbeat, plus scheduling slack.
const HEARTBEAT_DEADLINE_MS = STATS_TTL * 1000 + 3000;

// Mixed transports, so cross-node delivery is checked to WebSocket and to long-polling sockets.
const TRANSPORT_OF_NODE = [{ transports: ['websocket'] }, {}, { transports: ['polling'] }];

describe('three nodes on one Redis', () => {
  let cluster;
  before(async () => {
    // One sender emits 60 private messages in a burst in the reachability test; the per-socket
    // event limit (tested in tests/e2e) would otherwise reject some on a fast machine.
    cluster = await startCluster(null, {
      nodes: 3,
      statsTtl: STATS_TTL,
      args: ['--event-rate-limit', '1000', '--event-rate-burst', '1000'],
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  const node = (i) => cluster.nodes[i];
  /** A user's `/` (or `namespace`) socket on node `i`, disconnected when the test ends. */
  const on = (t, i, user, opts = {}) => userOn(cluster, node(i), user, { transport: TRANSPORT_OF_NODE[i], t, ...opts });
  const adminOn = (t, i) => on(t, i, newUser('admin', { role: 'admin' }), { namespace: '/admin' });
  const adminToken = () => cluster.token({ userId: `api-admin-${process.pid}`, username: 'api', role: 'admin' });

  test('/cluster/stats on every node lists all three nodes; /stats names its own node', async () => {
    for (const gw of cluster.nodes) await waitForStatsIds(gw, cluster.ids, HEARTBEAT_DEADLINE_MS);
    for (const gw of cluster.nodes) {
      const own = await http(gw, '/stats');
      assert.equal(own.status, 200);
      assert.equal(own.json?.serverId, gw.serverId, `/stats of ${gw.serverId}: ${own.text}`);
    }
    const { json } = await clusterStats(node(0));
    assert.equal(typeof json.totals, 'object', `totals missing: ${JSON.stringify(json)}`);
  });

  test('gateway cluster-stats --redis-url URL --json lists all three nodes; without --json it names them', async () => {
    let last;
    await waitFor(async () => {
      last = await runGatewayToExit(['cluster-stats', '--redis-url', cluster.redis.url, '--json'], { timeoutMs: 10_000 });
      const parsed = JSON.parse(last.stdout);
      const ids = parsed.nodes.map((n) => n.serverId).sort();
      return last.code === 0 && JSON.stringify(ids) === JSON.stringify([...cluster.ids].sort()) && typeof parsed.totals === 'object';
    }, HEARTBEAT_DEADLINE_MS, { interval: 250, what: 'gateway cluster-stats --json to list the three nodes' }).catch((e) => {
      throw new Error(`${e.message}; last run: code ${last?.code}, stdout ${last?.stdout}, stderr ${last?.stderr}`);
    });
    const human = await runGatewayToExit(['cluster-stats', '--redis-url', cluster.redis.url], { timeoutMs: 10_000 });
    assert.equal(human.code, 0, human.stderr);
    for (const id of cluster.ids) assert.ok(human.stdout.includes(id), `human-readable cluster-stats lacks ${id}: ${human.stdout}`);
  });

  test('admin get stats is cluster-wide: connections on other nodes, rooms created elsewhere, every node', async (t) => {
    const adm = await adminOn(t, 0);
    await on(t, 1, newUser('statsB'));
    await on(t, 2, newUser('statsC'));
    await on(t, 2, newUser('statsChat'), { namespace: '/chat' });
    await on(t, 1, newUser('statsGame'), { namespace: '/game' });
    const creator = await on(t, 2, newUser('statsRoom'));
    const roomId = newRoomId('statsroom');
    assert.equal((await call(creator.socket, 'create room', { roomId, roomName: 'Cluster Stats Room' }))?.success, true);
    let last;
    try {
      await waitFor(async () => {
        const pushed = once(adm.socket, 'stats', 5000);
        adm.socket.emit('get stats');
        last = await pushed;
        const ids = (last?.nodes ?? []).map((n) => n?.serverId).sort();
        return (
          JSON.stringify(ids) === JSON.stringify([...cluster.ids].sort()) &&
          last.totalConnections >= 3 &&
          last.chatConnections >= 1 &&
          last.gameConnections >= 1 &&
          Array.isArray(last.rooms) &&
          (last.rooms.includes(roomId) || last.rooms.includes('Cluster Stats Room'))
        );
      }, HEARTBEAT_DEADLINE_MS, { interval: 250, what: 'admin stats on node A to count sockets on B and C, list the room made on C and all three nodes' });
    } catch (e) {
      throw new Error(`${e.message}; last stats: ${JSON.stringify(last)}`);
    }
  });

  test('chat message without a room: from node A to every socket on B and C, sender excluded', async (t) => {
    const a = await on(t, 0, newUser('bcA'));
    const b = await on(t, 1, newUser('bcB'));
    const b2 = await on(t, 1, newUser('bcB2'));
    const c = await on(t, 2, newUser('bcC'));
    const seen = [a, b, b2, c].map((x) => record(x.socket, 'chat message'));
    const ack = await call(a.socket, 'chat message', { content: '  hello <b>cluster</b> spam ' });
    assert.equal(ack?.success, true, JSON.stringify(ack));
    for (const [i, who] of [[1, 'B'], [2, 'B (second socket)'], [3, 'C']]) {
      await waitForEntries(seen[i], (m) => m?.id === ack.messageId, { what: `A's chat message on the socket on node ${who}` });
      const m = seen[i].find((x) => x.id === ack.messageId);
      assert.equal(m.from, a.user.userId);
      assert.equal(m.username, a.welcome.username);
      assert.equal(m.content, 'hello cluster ***');
      assert.equal(m.type, 'text');
      assert.match(m.timestamp, RFC3339);
    }
    await barrier(a.socket);
    assert.equal(seen[0].filter((m) => m?.id === ack.messageId).length, 0, 'the sender got its own broadcast');
    for (const [i, list] of seen.entries()) {
      assert.ok(list.filter((m) => m?.id === ack.messageId).length <= 1, `socket ${i} got the message more than once: ${JSON.stringify(list)}`);
    }
  });

  test('private message: every socket of the user on any node gets it; "User is offline" only when none anywhere', async (t) => {
    const a = await on(t, 0, newUser('pmA'));
    const target = newUser('pmTarget');
    const onB = await on(t, 1, target);
    const onC = await on(t, 2, target);
    const gotB = record(onB.socket, 'private message');
    const gotC = record(onC.socket, 'private message');
    const gotA = record(a.socket, 'private message');
    const ack = await call(a.socket, 'private message', { to: target.userId, content: 'psst <i>across</i> nodes' });
    assert.equal(ack?.success, true, `private message to a user connected only on other nodes: ${JSON.stringify(ack)}`);
    for (const [list, where] of [[gotB, 'B'], [gotC, 'C']]) {
      await waitForEntries(list, (m) => m?.id === ack.messageId, { what: `the private message on the target's socket on node ${where}` });
      const m = list.find((x) => x.id === ack.messageId);
      assert.equal(m.from, a.user.userId);
      assert.equal(m.to, target.userId);
      assert.equal(m.content, 'psst across nodes');
      assert.equal(m.type, 'private');
    }
    await barrier(a.socket);
    assert.equal(gotA.length, 0, 'the sender got its own private message');

    const offline = await call(a.socket, 'private message', { to: `nobody-${process.pid}`, content: 'hello?' });
    assert.deepEqual(offline, { success: false, error: 'User is offline' });

    // Early form: addressed to one socket, which lives on another node.
    const before = gotB.length;
    const early = await call(a.socket, 'private message', { targetSocketId: onC.socket.id, message: 'to the C socket only' });
    assert.equal(early?.success, true, `early-form private message to a socket on node C: ${JSON.stringify(early)}`);
    await waitForEntries(gotC, (m) => m?.content === 'to the C socket only', { what: 'the early-form private message on node C' });
    await barrier(onB.socket);
    assert.equal(gotB.length, before, `the early form addressed the C socket but B got: ${JSON.stringify(gotB.slice(before))}`);
  });

  test('a user is reachable from other nodes as soon as it has its welcome: 60 private messages sent right after connect all arrive', async (t) => {
    const sender = await on(t, 0, newUser('fastFrom'));
    const lost = [];
    for (let i = 0; i < 60; i++) {
      const target = newUser('fastTo');
      const r = await userOn(cluster, node(1 + (i % 2)), target, { transport: { transports: ['websocket'] } });
      try {
        const got = once(r.socket, 'private message', 3000).then(() => true, () => false);
        const ack = await call(sender.socket, 'private message', { to: target.userId, content: `right after welcome ${i}` });
        assert.equal(ack?.success, true, JSON.stringify(ack));
        if (!(await got)) lost.push(`#${i} to node ${'BC'[i % 2]} (ack ${JSON.stringify(ack)})`);
      } finally {
        r.socket.disconnect();
      }
    }
    assert.deepEqual(lost, [], `private messages acked { success: true } but never delivered to a socket that had just received welcome on another node: ${lost.length}/60`);
  });

  test('/chat private message reaches user:<to> in /chat on another node; the sender gets message sent', async (t) => {
    const sender = await on(t, 2, newUser('chatPmFrom'), { namespace: '/chat' });
    const target = newUser('chatPmTo');
    const receiver = await on(t, 0, target, { namespace: '/chat' });
    const mainOfTarget = await on(t, 1, target);
    const gotMain = record(mainOfTarget.socket, 'private message');
    const received = once(receiver.socket, 'private message', 5000);
    const sent = once(sender.socket, 'message sent', 5000);
    sender.socket.emit('private message', { to: target.userId, content: 'chat across nodes' });
    const m = await received.catch((e) => {
      throw new Error(`/chat private message from node C did not reach the /chat socket on node A: ${e.message}`);
    });
    assert.equal(m.content, 'chat across nodes');
    assert.equal(m.to, target.userId);
    const s = await sent;
    assert.equal(typeof s?.messageId, 'string');
    await barrier(mainOfTarget.socket);
    assert.equal(gotMain.length, 0, 'a /chat private message leaked into the / namespace');
  });

  test('rooms: created on A, listed and joinable on B and C, counts and membership cluster-wide, deleted when the last member leaves', async (t) => {
    const a = await on(t, 0, newUser('roomA'));
    const b = await on(t, 1, newUser('roomB'));
    const c = await on(t, 2, newUser('roomC'));
    const late = await on(t, 1, newUser('roomLate'));
    const roomId = newRoomId('xroom');
    const created = await call(a.socket, 'create room', { roomId, roomName: 'Cross Node', maxUsers: 3 });
    assert.deepEqual(created, { success: true, roomId });

    const again = await call(c.socket, 'create room', { roomId, roomName: 'Duplicate' });
    assert.deepEqual(again, { success: false, error: 'Room already exists' }, 'a room created on node A must exist for node C');

    const listed = await call(b.socket, 'get rooms');
    const r = listed?.rooms?.find((x) => x.id === roomId);
    assert.ok(r, `room created on A missing from get rooms on B: ${JSON.stringify(listed)}`);
    assert.equal(r.name, 'Cross Node');
    assert.equal(r.maxUsers, 3);

    const aUserJoined = record(a.socket, 'user joined');
    const bUserJoined = record(b.socket, 'user joined');
    const aJoined = once(a.socket, 'room joined', 5000);
    assert.equal((await call(a.socket, 'join room', { roomId }))?.success, true);
    assert.equal((await aJoined).userCount, 1);

    const bJoined = once(b.socket, 'room joined', 5000);
    assert.equal((await call(b.socket, 'join room', { roomId }))?.success, true, 'join on node B of a room created on node A');
    const bj = await bJoined;
    assert.equal(bj.userCount, 2, `room joined on B: ${JSON.stringify(bj)}`);
    assert.deepEqual([...bj.users].sort(), [a.socket.id, b.socket.id].sort(), 'room joined lists members on every node');
    await waitForEntries(aUserJoined, (e) => e?.socketId === b.socket.id, { what: 'user joined (B) on the room member on node A' });
    assert.deepEqual(aUserJoined.find((e) => e.socketId === b.socket.id), {
      socketId: b.socket.id,
      userId: b.user.userId,
      username: b.welcome.username,
      roomId,
      userCount: 2,
    });

    const cJoined = once(c.socket, 'room joined', 5000);
    assert.equal((await call(c.socket, 'join room', { roomId }))?.success, true);
    assert.equal((await cJoined).userCount, 3);
    await waitForEntries(aUserJoined, (e) => e?.socketId === c.socket.id && e.userCount === 3, { what: 'user joined (C, count 3) on node A' });
    await waitForEntries(bUserJoined, (e) => e?.socketId === c.socket.id && e.userCount === 3, { what: 'user joined (C, count 3) on node B' });

    const roomError = once(late.socket, 'room error', 5000);
    const full = await call(late.socket, 'join room', { roomId });
    assert.deepEqual(full, { success: false, error: 'Room is full' }, 'maxUsers 3 with members on A, B and C: a 4th join on B must be refused');
    assert.deepEqual(await roomError, { message: 'Room is full' });

    for (const [i, who] of [[0, a], [1, b], [2, c]]) {
      const info = await call(who.socket, 'get room info', roomId);
      assert.equal(info?.room?.userCount, 3, `get room info on node ${i}: ${JSON.stringify(info)}`);
      assert.equal(info.room.users.length, 3, `get room info users on node ${i}: ${JSON.stringify(info)}`);
    }
    const countOnA = (await call(a.socket, 'get rooms'))?.rooms?.find((x) => x.id === roomId)?.userCount;
    assert.equal(countOnA, 3, 'get rooms on A counts members on B and C');

    // room message from C reaches A and B.
    const rmA = record(a.socket, 'room message');
    const rmB = record(b.socket, 'room message');
    const rmC = record(c.socket, 'room message');
    assert.equal((await call(c.socket, 'room message', { roomId, message: 'hi room from C' }))?.success, true);
    for (const [list, where] of [[rmA, 'A'], [rmB, 'B']]) {
      await waitForEntries(list, (m) => m?.message === 'hi room from C', { what: `room message from C on node ${where}` });
      const m = list.find((x) => x.message === 'hi room from C');
      assert.equal(m.from, c.user.userId);
      assert.equal(m.roomId, roomId);
    }
    await barrier(c.socket);
    assert.equal(rmC.length, 0, 'the sender got its own room message');

    // chat message to the room from B: delivered on A and C, in history read on A.
    const cmA = record(a.socket, 'chat message');
    const cmC = record(c.socket, 'chat message');
    const chat = await call(b.socket, 'chat message', { content: 'history across nodes', roomId });
    assert.equal(chat?.success, true, JSON.stringify(chat));
    await waitForEntries(cmA, (m) => m?.id === chat.messageId && m.roomId === roomId, { what: 'room chat message from B on node A' });
    await waitForEntries(cmC, (m) => m?.id === chat.messageId, { what: 'room chat message from B on node C' });
    const hist = await call(a.socket, 'room history', { roomId });
    assert.equal(hist?.success, true, JSON.stringify(hist));
    assert.ok(hist.messages.some((m) => m.id === chat.messageId), `history read on A lacks the message written on B: ${JSON.stringify(hist)}`);

    // A member on B disconnects: A and C get user left with the cluster-wide count.
    const aLeft = record(a.socket, 'user left');
    const cLeft = record(c.socket, 'user left');
    b.socket.disconnect();
    await waitForEntries(aLeft, (e) => e?.socketId === b.socket.id || e?.userId === b.user.userId, { what: 'user left (B disconnected) on node A' });
    await waitForEntries(cLeft, (e) => e?.userId === b.user.userId, { what: 'user left (B disconnected) on node C' });
    assert.equal(aLeft.find((e) => e.userId === b.user.userId).userCount, 2);

    // Now there is room again for the late user on B.
    assert.equal((await call(late.socket, 'join room', { roomId }))?.success, true, 'a slot freed by a disconnect on B must be usable');
    assert.equal((await call(late.socket, 'leave room', roomId))?.success, true);
    assert.equal((await call(c.socket, 'leave room', roomId))?.success, true);
    await waitForEntries(aLeft, (e) => e?.userId === c.user.userId && e.userCount === 1, { what: 'user left (C left, count 1) on node A' });
    assert.equal((await call(a.socket, 'leave room', roomId))?.success, true);

    // The last member left on A: the room is gone for B and C too.
    await waitFor(async () => !(await call(late.socket, 'get rooms'))?.rooms?.some((x) => x.id === roomId), 3000, {
      what: `room ${roomId} to vanish from get rooms on node B after its last member left on A`,
    });
    const gone = await call(c.socket, 'join room', { roomId });
    assert.deepEqual(gone, { success: false, error: 'Room does not exist' });
    assert.equal((await call(c.socket, 'get room info', roomId))?.room, null);
  });

  test('room races: the same roomId created on three nodes at once succeeds once; six joins from three nodes at once fill maxUsers 3 exactly', async (t) => {
    const creators = [await on(t, 0, newUser('raceCreateA')), await on(t, 1, newUser('raceCreateB')), await on(t, 2, newUser('raceCreateC'))];
    for (let round = 0; round < 3; round++) {
      const roomId = newRoomId('racecreate');
      const acks = await Promise.all(creators.map((c, i) => call(c.socket, 'create room', { roomId, roomName: `by ${'ABC'[i]}`, maxUsers: 3 })));
      assert.equal(acks.filter((a) => a?.success === true).length, 1, `round ${round}: concurrent create room on A, B, C: ${JSON.stringify(acks)}`);
      assert.equal(acks.filter((a) => a?.error === 'Room already exists').length, 2, JSON.stringify(acks));
    }

    const roomId = newRoomId('racejoin');
    assert.equal((await call(creators[0].socket, 'create room', { roomId, roomName: 'Three seats', maxUsers: 3 }))?.success, true);
    const joiners = [];
    for (const i of [0, 1, 2, 0, 1, 2]) joiners.push(await on(t, i, newUser(`seat${'ABC'[i]}`)));
    const acks = await Promise.all(joiners.map((j) => call(j.socket, 'join room', { roomId })));
    const won = acks.filter((a) => a?.success === true).length;
    assert.equal(won, 3, `six concurrent joins (two per node) of a room with maxUsers 3: ${won} succeeded: ${JSON.stringify(acks)}`);
    assert.equal(acks.filter((a) => a?.error === 'Room is full').length, 3, JSON.stringify(acks));
    for (const [i, j] of creators.entries()) {
      const info = await call(j.socket, 'get room info', roomId);
      assert.equal(info?.room?.userCount, 3, `get room info on node ${'ABC'[i]}: ${JSON.stringify(info)}`);
    }
  });

  test('private room: password checked on a node other than the creator', async (t) => {
    const a = await on(t, 1, newUser('privA'));
    const c = await on(t, 2, newUser('privC'));
    const roomId = newRoomId('xpriv');
    assert.equal((await call(a.socket, 'create room', { roomId, roomName: 'Vault', isPrivate: true, password: 's3cret-pass' }))?.success, true);
    const err = once(c.socket, 'room error', 5000);
    assert.deepEqual(await call(c.socket, 'join room', { roomId, password: 'wrong' }), { success: false, error: 'Wrong room password' });
    assert.deepEqual(await err, { message: 'Wrong room password' });
    assert.equal((await call(c.socket, 'join room', { roomId, password: 's3cret-pass' }))?.success, true);
    const observer = await on(t, 0, newUser('privObserver'));
    const rooms = await call(observer.socket, 'get rooms');
    assert.ok(!rooms.rooms.some((r) => r.id === roomId), 'a private room is listed by get rooms on another node');
  });

  test('presence: user online once per user cluster-wide, get online users on every node, user offline only after the last socket anywhere', async (t) => {
    const watcherA = await on(t, 0, newUser('watchA'));
    const watcherC = await on(t, 2, newUser('watchC'));
    const onlineA = record(watcherA.socket, 'user online');
    const onlineC = record(watcherC.socket, 'user online');
    const offlineA = record(watcherA.socket, 'user offline');

    const x = newUser('presence');
    const xB = await on(t, 1, x);
    await waitForEntries(onlineA, (e) => e?.userId === x.userId, { what: `user online for ${x.userId} (connected on B) on node A` });
    await waitForEntries(onlineC, (e) => e?.userId === x.userId, { what: `user online for ${x.userId} (connected on B) on node C` });
    assert.deepEqual(onlineA.find((e) => e.userId === x.userId), { userId: x.userId, username: x.username });

    const xC = await on(t, 2, x);
    for (const [i, watcher] of [[0, watcherA], [2, watcherC]]) {
      const { users } = await call(watcher.socket, 'get online users');
      const mine = users.filter((u) => u.id === x.userId).map((u) => u.socketId).sort();
      assert.deepEqual(mine, [xB.socket.id, xC.socket.id].sort(), `get online users on node ${i} must list both sockets of ${x.userId}: ${JSON.stringify(users)}`);
      assert.ok(users.some((u) => u.id === watcherA.user.userId && u.socketId === watcherA.socket.id));
      assert.ok(users.some((u) => u.id === watcherC.user.userId && u.username === watcherC.welcome.username));
    }
    await barrier(watcherA.socket);
    assert.equal(onlineA.filter((e) => e.userId === x.userId).length, 1, `a second socket (on C) of a user already online (on B) announced user online again: ${JSON.stringify(onlineA)}`);

    xB.socket.disconnect();
    await waitFor(async () => {
      const { users } = await call(watcherA.socket, 'get online users');
      return !users.some((u) => u.socketId === xB.socket.id);
    }, 3000, { what: `get online users on A to drop ${x.userId}'s socket that disconnected from B` });
    await barrier(watcherA.socket);
    assert.equal(offlineA.filter((e) => e.userId === x.userId).length, 0, 'user offline while the user still has a socket on node C');

    xC.socket.disconnect();
    await waitForEntries(offlineA, (e) => e?.userId === x.userId, { what: `user offline for ${x.userId} on node A after its last socket (on C) closed` });
    assert.deepEqual(offlineA.find((e) => e.userId === x.userId), { userId: x.userId, username: x.username });
  });

  test('presence races: one user connecting on B and C at the same moment is announced online once; leaving both at once, offline once', async (t) => {
    const watcher = await on(t, 0, newUser('raceWatch'));
    const online = record(watcher.socket, 'user online');
    const offline = record(watcher.socket, 'user offline');
    for (let round = 0; round < 3; round++) {
      const y = newUser(`race${round}`);
      const [yB, yC] = await Promise.all([on(t, 1, y), on(t, 2, y)]);
      await waitForEntries(online, (e) => e?.userId === y.userId, { what: `user online for ${y.userId} (connected on B and C at once) on node A` });
      yB.socket.disconnect();
      yC.socket.disconnect();
      await waitForEntries(offline, (e) => e?.userId === y.userId, { what: `user offline for ${y.userId} (left B and C at once) on node A` });
      await waitFor(async () => {
        const { users } = await call(watcher.socket, 'get online users');
        return !users.some((u) => u.id === y.userId);
      }, 3000, { what: `${y.userId} to leave get online users` });
      await barrier(watcher.socket);
      assert.equal(online.filter((e) => e.userId === y.userId).length, 1, `round ${round}: user online announced ${online.filter((e) => e.userId === y.userId).length} times`);
      assert.equal(offline.filter((e) => e.userId === y.userId).length, 1, `round ${round}: user offline announced ${offline.filter((e) => e.userId === y.userId).length} times`);
    }
  });

  test('/chat chat message crosses nodes within /chat only', async (t) => {
    const from = await on(t, 0, newUser('chatFrom'), { namespace: '/chat' });
    const to = await on(t, 2, newUser('chatTo'), { namespace: '/chat' });
    const mainSock = await on(t, 1, newUser('chatMain'));
    const gotMain = record(mainSock.socket, 'chat message');
    const got = once(to.socket, 'chat message', 5000);
    from.socket.emit('chat message', { content: 'chat namespace across nodes' });
    const m = await got.catch((e) => {
      throw new Error(`/chat chat message from node A did not reach /chat on node C: ${e.message}`);
    });
    assert.equal(m.content, 'chat namespace across nodes');
    await barrier(mainSock.socket);
    assert.ok(!gotMain.some((x) => x?.content === 'chat namespace across nodes'), 'a /chat message reached a / socket');
  });

  test('game: concurrent players on three nodes; one seq per game with no gaps or repeats, same for every player', async (t) => {
    const gameId = newRoomId('game');
    const players = [];
    for (const i of [0, 1, 2]) players.push(await on(t, i, newUser(`gamer${i}`), { namespace: '/game' }));
    const updates = players.map((p) => record(p.socket, 'game update'));
    const joinedOnA = record(players[0].socket, 'player joined');
    const joinedOnB = record(players[1].socket, 'player joined');
    // A is in once its own action comes back; B once A hears it join; C once A and B hear it join.
    players[0].socket.emit('join game', gameId);
    let warmupSeq;
    await waitFor(async () => {
      players[0].socket.emit('game action', { gameId, move: 'warmup' });
      const u = await once(players[0].socket, 'game update', 1000).catch(() => null);
      if (u?.gameId === gameId) warmupSeq = u.seq;
      return u?.gameId === gameId;
    }, 5000, { interval: 0, what: 'the player on node A to get its own game update after join game' });
    assert.ok(Number.isInteger(warmupSeq), `seq must be an integer: ${warmupSeq}`);
    players[1].socket.emit('join game', gameId);
    await waitForEntries(joinedOnA, (e) => e?.playerId === players[1].socket.id && e.gameId === gameId, { what: 'player joined (player on B) on node A' });
    players[2].socket.emit('join game', gameId);
    await waitForEntries(joinedOnA, (e) => e?.playerId === players[2].socket.id, { what: 'player joined (player on C) on node A' });
    await waitForEntries(joinedOnB, (e) => e?.playerId === players[2].socket.id, { what: 'player joined (player on C) on node B' });

    const PER_PLAYER = 15;
    await Promise.all(
      players.map(async (p, pi) => {
        for (let n = 0; n < PER_PLAYER; n++) p.socket.emit('game action', { gameId, move: `${pi}:${n}` });
      }),
    );
    const total = PER_PLAYER * players.length;
    for (const [i, list] of updates.entries()) {
      await waitForEntries(list, (u) => u?.gameId === gameId && u.action?.move !== 'warmup', { n: total, ms: 8000, what: `${total} game updates on the player on node ${'ABC'[i]}` });
    }
    const lastWarmup = Math.max(...updates[0].filter((u) => u.gameId === gameId && u.action?.move === 'warmup').map((u) => u.seq));
    const reference = new Map();
    for (const [i, list] of updates.entries()) {
      const mine = list.filter((u) => u.gameId === gameId && u.action?.move !== 'warmup');
      assert.equal(mine.length, total, `player on node ${'ABC'[i]} got ${mine.length} updates, expected ${total}`);
      const seqs = mine.map((u) => u.seq).sort((x, y) => x - y);
      assert.equal(new Set(seqs).size, seqs.length, `repeated seq on node ${'ABC'[i]}: ${JSON.stringify(seqs)}`);
      assert.equal(seqs[0], lastWarmup + 1, `the first concurrent seq must follow the warm-up's (${lastWarmup}) on node ${'ABC'[i]}: ${JSON.stringify(seqs)}`);
      for (let k = 1; k < seqs.length; k++) assert.equal(seqs[k], seqs[k - 1] + 1, `gap in seq on node ${'ABC'[i]}: ${JSON.stringify(seqs)}`);
      const moves = new Set(mine.map((u) => u.action?.move));
      assert.equal(moves.size, total, `player on node ${'ABC'[i]} missed or duplicated actions`);
      for (const u of mine) {
        assert.match(u.timestamp, RFC3339);
        const key = `${u.playerId}|${u.action?.move}`;
        if (i === 0) reference.set(u.seq, key);
        else assert.equal(reference.get(u.seq), key, `seq ${u.seq} names a different action on node ${'ABC'[i]} than on node A`);
      }
    }

    // A player on C goes away: the players on A and B get player disconnected.
    const goneA = record(players[0].socket, 'player disconnected');
    const goneB = record(players[1].socket, 'player disconnected');
    const leaverId = players[2].socket.id;
    players[2].socket.disconnect();
    await waitForEntries(goneA, (e) => e?.playerId === leaverId && e.gameId === gameId, { what: 'player disconnected (player on C) on node A' });
    await waitForEntries(goneB, (e) => e?.playerId === leaverId && e.gameId === gameId, { what: 'player disconnected (player on C) on node B' });
  });

  test('admin kick user: a socket on another node gets kicked and is disconnected', async (t) => {
    const adm = await adminOn(t, 0);
    const victim = await on(t, 2, newUser('kickme'));
    const kicked = once(victim.socket, 'kicked', 5000);
    const gone = once(victim.socket, 'disconnect', 5000);
    adm.socket.emit('kick user', victim.socket.id);
    assert.deepEqual(await kicked.catch((e) => {
      throw new Error(`kick from node A of a socket on node C: ${e.message}`);
    }), { reason: 'Kicked by admin' });
    assert.equal(await gone, 'io server disconnect');
  });

  test('admin ban user: every socket of the user on every node is banned; new connections refused on every node; unban lifts it', async (t) => {
    const adm = await adminOn(t, 0);
    const user = newUser('banme');
    const onB = await on(t, 1, user);
    const onC = await on(t, 2, user);
    const banned = [onB, onC].map((s) => once(s.socket, 'banned', 5000));
    const gone = [onB, onC].map((s) => once(s.socket, 'disconnect', 5000));
    adm.socket.emit('ban user', { userId: user.userId, reason: 'cluster-wide ban' });
    for (const [k, p] of banned.entries()) {
      assert.deepEqual(await p.catch((e) => {
        throw new Error(`banned on the socket on node ${'BC'[k]}: ${e.message}`);
      }), { reason: 'cluster-wide ban' });
    }
    await Promise.all(gone);
    for (const i of [0, 1, 2]) {
      const err = await connectError(client(node(i), { token: cluster.token(user) }));
      assert.equal(err.message, 'Banned: cluster-wide ban', `connection of the banned user to node ${'ABC'[i]}`);
    }
    adm.socket.emit('unban user', user.userId);
    await waitFor(async () => {
      const s = client(node(2), { token: cluster.token(user) });
      try {
        await once(s, 'connect', 2000);
        return true;
      } finally {
        s.disconnect();
      }
    }, 5000, { interval: 200, what: 'the unbanned user to connect to node C again' });
  });

  test('ban is published as user_banned on cluster:message; a timed ban expires on every node', async (t) => {
    const bus = await watchControlBus(cluster.redis.port);
    t.after(() => bus.close());
    const adm = await adminOn(t, 1);
    const user = newUser('timedban');
    const onC = await on(t, 2, user);
    const banned = once(onC.socket, 'banned', 5000);
    adm.socket.emit('ban user', { userId: user.userId, reason: 'two seconds', durationSecs: 2 });
    assert.deepEqual(await banned, { reason: 'two seconds' });
    const bannedAt = Date.now();
    await waitFor(() => bus.messages.some((m) => m.event === 'user_banned' && m.serverId === node(1).serverId), 3000, {
      what: `user_banned from ${node(1).serverId} on cluster:message`,
    }).catch((e) => {
      throw new Error(`${e.message}; seen ${JSON.stringify(bus.messages)}`);
    });
    const envelope = bus.messages.find((m) => m.event === 'user_banned');
    assert.deepEqual(Object.keys(envelope).sort(), ['data', 'event', 'serverId', 'timestamp'], JSON.stringify(envelope));
    assert.match(envelope.timestamp, RFC3339);
    assert.ok(JSON.stringify(envelope.data).includes(user.userId), `user_banned data names the user: ${JSON.stringify(envelope)}`);
    const refused = await connectError(client(node(0), { token: cluster.token(user) }));
    assert.equal(refused.message, 'Banned: two seconds');
    await waitFor(async () => {
      const s = client(node(0), { token: cluster.token(user) });
      try {
        await once(s, 'connect', 1500);
        return true;
      } finally {
        s.disconnect();
      }
    }, 8000, { interval: 250, what: 'the 2 s ban to expire on node A' });
    assert.ok(Date.now() - bannedAt >= 1500, `the 2 s ban was lifted after ${Date.now() - bannedAt} ms`);
  });

  test('POST /api/ban on node B disconnects the user on node C', async (t) => {
    const user = newUser('apibanx');
    const onC = await on(t, 2, user);
    const banned = once(onC.socket, 'banned', 5000);
    const res = await http(node(1), '/api/ban', { method: 'POST', token: adminToken(), body: { userId: user.userId, reason: 'api ban' } });
    assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.text}`);
    assert.deepEqual(await banned, { reason: 'api ban' });
  });

  test('announcements: admin broadcast and /api/announce on one node reach / sockets on every node exactly once', async (t) => {
    const adm = await adminOn(t, 0);
    const socks = [await on(t, 0, newUser('annA')), await on(t, 1, newUser('annB')), await on(t, 2, newUser('annC'))];
    const chatOnly = await on(t, 1, newUser('annChat'), { namespace: '/chat' });
    const got = socks.map((s) => record(s.socket, 'system message'));
    const chatGot = record(chatOnly.socket, 'system message');
    adm.socket.emit('broadcast message', { message: 'admin on A speaks' });
    const res = await http(node(1), '/api/announce', { method: 'POST', token: adminToken(), body: { message: 'backend via B' } });
    assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.text}`);
    for (const [i, list] of got.entries()) {
      await waitForEntries(list, (m) => m?.content === 'admin on A speaks', { what: `admin broadcast (from A) on node ${'ABC'[i]}` });
      await waitForEntries(list, (m) => m?.content === 'backend via B', { what: `/api/announce (on B) on node ${'ABC'[i]}` });
      const m = list.find((x) => x.content === 'admin on A speaks');
      assert.equal(m.type, 'announcement');
      assert.equal(m.from, 'system');
      assert.match(m.timestamp, RFC3339);
    }
    for (const s of socks) await barrier(s.socket);
    for (const [i, list] of got.entries()) {
      assert.equal(list.filter((m) => m.content === 'admin on A speaks').length, 1, `node ${'ABC'[i]} socket got the admin broadcast ${list.length} times`);
      assert.equal(list.filter((m) => m.content === 'backend via B').length, 1, `node ${'ABC'[i]} socket got the announcement more than once`);
    }
    // A round trip on /chat (which has no get online users) before checking that nothing came.
    assert.equal((await call(chatOnly.socket, 'chat message', { content: 'round trip' }))?.success, true);
    assert.equal(chatGot.length, 0, '/chat sockets must not get system message');
  });

  test('system_announcement on cluster:message from a foreign node reaches / sockets on every node exactly once', async (t) => {
    const socks = [await on(t, 0, newUser('sysA')), await on(t, 1, newUser('sysB')), await on(t, 2, newUser('sysC'))];
    const got = socks.map((s) => record(s.socket, 'system_announcement'));
    const db = await RespClient.connect(cluster.redis.port);
    t.after(() => db.close());
    let subscribers;
    await waitFor(async () => {
      subscribers = await classicSubscribers(cluster.redis, 'cluster:message');
      return subscribers >= 3;
    }, 5000, { interval: 100, what: 'every node to subscribe to cluster:message' }).catch((e) => {
      throw new Error(`${e.message} (PUBSUB NUMSUB says ${subscribers})`);
    });
    const envelope = { serverId: `foreign-${process.pid}`, event: 'system_announcement', data: { message: 'maintenance at noon' }, timestamp: new Date().toISOString() };
    await db.command('PUBLISH', 'cluster:message', JSON.stringify(envelope));
    for (const [i, list] of got.entries()) {
      await waitForEntries(list, (m) => m?.message === 'maintenance at noon', { what: `system_announcement on node ${'ABC'[i]}` });
    }
    for (const s of socks) await barrier(s.socket);
    // Give a node that re-broadcasts through the adapter time to show the duplicate, then count.
    await new Promise((r) => setTimeout(r, 300));
    for (const s of socks) await barrier(s.socket);
    for (const [i, list] of got.entries()) {
      assert.equal(list.length, 1, `socket on node ${'ABC'[i]} got the announcement ${list.length} times (each node must deliver to its own sockets only)`);
    }
  });

  test('POST /api/emit to a user room on node A reaches that user on node C', async (t) => {
    const user = newUser('emitx');
    const onC = await on(t, 2, user);
    const got = once(onC.socket, 'backend event', 5000);
    const res = await http(node(0), '/api/emit', { method: 'POST', token: adminToken(), body: { room: `user:${user.userId}`, event: 'backend event', data: { n: 1 } } });
    assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.text}`);
    assert.deepEqual(await got.catch((e) => {
      throw new Error(`/api/emit on A to a room on C: ${e.message}`);
    }), { n: 1 });
  });
});
