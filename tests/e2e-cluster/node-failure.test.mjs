// A node of a three-node cluster dies (SIGKILL) or stops gracefully (SIGTERM), seen from the
// survivors: docs/protocol.md sections "Namespaces and events" (user offline also when the node
// died), "Node stats and liveness" (a dead node's records go; the shutdown sequence) and
// "Control bus" (server_shutdown).
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { barrier, newRoomId, newUser, once, RFC3339, test, waitFor } from '../e2e/support/gateway.mjs';
import { call, clusterStats, record, startCluster, userOn, waitForEntries, waitForStatsIds, watchControlBus, within } from './support/cluster.mjs';

/** Emits with an ack and a long deadline: a request that involves a dead node must still end. */
function askLong(socket, ms, event, ...args) {
  return socket.timeout(ms).emitWithAck(event, ...args);
}

describe('node failure', () => {
  test('SIGKILL: requests involving the dead node return within their timeout; within the stats TTL it leaves /cluster/stats, its users go offline, room counts drop', { timeout: 90_000 }, async (t) => {
    const TTL = 3;
    const cluster = await startCluster(t, { nodes: 3, statsTtl: TTL });
    const [A, B, C] = cluster.nodes;
    for (const gw of cluster.nodes) await waitForStatsIds(gw, cluster.ids, TTL * 1000 + 3000, 'before the kill');

    const watcher = await userOn(cluster, A, newUser('watchA'), { t });
    const onB = await userOn(cluster, B, newUser('memberB'), { t });
    const victimUser = newUser('victim');
    const victim = await userOn(cluster, C, victimUser, { t });
    const admin = await userOn(cluster, A, newUser('admin', { role: 'admin' }), { namespace: '/admin', t });
    const roomId = newRoomId('deadroom');
    assert.equal((await call(watcher.socket, 'create room', { roomId, roomName: 'Survivors' }))?.success, true);
    for (const m of [watcher, onB, victim]) assert.equal((await call(m.socket, 'join room', { roomId }))?.success, true);
    const before = await call(watcher.socket, 'get room info', roomId);
    assert.equal(before?.room?.userCount, 3, `precondition: members on A, B and C: ${JSON.stringify(before)}`);
    const loneRoomId = newRoomId('loneroom');
    assert.equal((await call(victim.socket, 'create room', { roomId: loneRoomId, roomName: 'Only on C' }))?.success, true);
    assert.equal((await call(victim.socket, 'join room', { roomId: loneRoomId }))?.success, true);
    const offline = record(watcher.socket, 'user offline');
    const leftOnA = record(watcher.socket, 'user left');

    const killedAt = Date.now();
    process.kill(C.pid, 'SIGKILL');
    await C.exited;

    // Requests fanned out to every node while C is dead but not yet known dead must still answer.
    const REQUEST_DEADLINE_MS = 10_000;
    const timings = await Promise.all([
      within(REQUEST_DEADLINE_MS, 'get online users on A', () => askLong(watcher.socket, REQUEST_DEADLINE_MS, 'get online users')),
      within(REQUEST_DEADLINE_MS, 'get room info on A', () => askLong(watcher.socket, REQUEST_DEADLINE_MS, 'get room info', roomId)),
      within(REQUEST_DEADLINE_MS, 'get rooms on B', () => askLong(onB.socket, REQUEST_DEADLINE_MS, 'get rooms')),
      within(REQUEST_DEADLINE_MS, 'private message from A to the user on C', () =>
        askLong(watcher.socket, REQUEST_DEADLINE_MS, 'private message', { to: victimUser.userId, content: 'are you there?' }),
      ),
      within(REQUEST_DEADLINE_MS, 'admin get stats on A', () => {
        const got = once(admin.socket, 'stats', REQUEST_DEADLINE_MS);
        admin.socket.emit('get stats');
        return got;
      }),
      within(REQUEST_DEADLINE_MS, 'GET /cluster/stats on B', () => clusterStats(B, REQUEST_DEADLINE_MS)),
    ]);
    t.diagnostic(`request times right after the kill (ms): ${timings.map((x) => x.ms).join(', ')}`);
    for (const { value } of timings.slice(0, 4)) assert.notEqual(value, undefined);

    const deadline = TTL * 1000 + 4000 - (Date.now() - killedAt);
    await waitForStatsIds(A, [cluster.ids[0], cluster.ids[1]], Math.max(deadline, 500), `within ${TTL} s (+4 s) of the SIGKILL of ${C.serverId}`);
    await waitForStatsIds(B, [cluster.ids[0], cluster.ids[1]], 1000, `(node B's view)`);
    const goneAfter = Date.now() - killedAt;
    await waitForEntries(offline, (e) => e?.userId === victimUser.userId, {
      ms: Math.max(TTL * 1000 + 4000 - (Date.now() - killedAt), 1000),
      what: `user offline for ${victimUser.userId}, whose only socket was on the killed node, on node A`,
    });
    assert.deepEqual(offline.find((e) => e.userId === victimUser.userId), { userId: victimUser.userId, username: victimUser.username });
    t.diagnostic(`node left /cluster/stats ${goneAfter} ms after SIGKILL; user offline after ${Date.now() - killedAt} ms`);

    await waitFor(async () => (await call(watcher.socket, 'get room info', roomId))?.room?.userCount === 2, 3000, {
      what: 'get room info on A to count 2 members once the node holding the third died',
    });
    const rooms = await call(onB.socket, 'get rooms');
    assert.equal(rooms?.rooms?.find((r) => r.id === roomId)?.userCount, 2, `get rooms on B: ${JSON.stringify(rooms)}`);
    const { users } = await call(watcher.socket, 'get online users');
    assert.ok(!users.some((u) => u.id === victimUser.userId), `the dead node's user is still listed online: ${JSON.stringify(users)}`);
    assert.deepEqual(await call(watcher.socket, 'private message', { to: victimUser.userId, content: 'hello?' }), { success: false, error: 'User is offline' });

    await waitFor(async () => !(await call(onB.socket, 'get rooms'))?.rooms?.some((r) => r.id === loneRoomId), 3000, {
      what: `room ${loneRoomId}, whose only member was on the killed node, to be deleted cluster-wide`,
    });
    t.diagnostic(`user left events on A for the dead node's member: ${JSON.stringify(leftOnA.filter((e) => e?.userId === victimUser.userId))}`);

    // The survivors still talk to each other.
    const got = once(onB.socket, 'room message', 5000);
    assert.equal((await call(watcher.socket, 'room message', { roomId, message: 'still here' }))?.success, true);
    assert.equal((await got).message, 'still here');
  });

  test('SIGKILL with the default timings (stats TTL 60 s, liveness 6 s): within 10 s its users go offline and it leaves /cluster/stats', { timeout: 60_000 }, async (t) => {
    // statsTtl 60 is STATS_TTL_SECS's default, and the liveness TTL startCluster derives from it is
    // LIVENESS_TTL_MS's default (6 s). The stats key would keep the node listed for up to a minute.
    const cluster = await startCluster(t, { nodes: 3, statsTtl: 60 });
    const [A, , C] = cluster.nodes;
    for (const gw of cluster.nodes) await waitForStatsIds(gw, cluster.ids, 5000, 'before the kill');
    const watcher = await userOn(cluster, A, newUser('watchA'), { t });
    const victimUser = newUser('victim');
    await userOn(cluster, C, victimUser, { t });
    const offline = record(watcher.socket, 'user offline');
    const killedAt = Date.now();
    process.kill(C.pid, 'SIGKILL');
    await C.exited;
    await waitForEntries(offline, (e) => e?.userId === victimUser.userId, {
      ms: 10_000 - (Date.now() - killedAt),
      what: `user offline for ${victimUser.userId} within 10 s of the SIGKILL of ${C.serverId}`,
    });
    const offlineAfter = Date.now() - killedAt;
    await waitForStatsIds(A, [cluster.ids[0], cluster.ids[1]], Math.max(10_000 - (Date.now() - killedAt), 500), `within 10 s of the SIGKILL of ${C.serverId}`);
    t.diagnostic(`default timings: user offline after ${offlineAfter} ms, out of /cluster/stats after ${Date.now() - killedAt} ms`);
    // No false death of the survivors meanwhile.
    await waitForStatsIds(A, [cluster.ids[0], cluster.ids[1]], 1000, 'survivors still listed');
  });

  test('SIGKILL and restart with the same --server-id inside the TTL (a crash-looping pod, a compose restart): the previous run\'s users go offline, its memberships are dropped, the node serves again', { timeout: 90_000 }, async (t) => {
    const TTL = 10;
    const cluster = await startCluster(t, { nodes: 3, statsTtl: TTL });
    const [A, , C] = cluster.nodes;
    for (const gw of cluster.nodes) await waitForStatsIds(gw, cluster.ids, 6000, 'before the crash');
    const watcher = await userOn(cluster, A, newUser('watchA'), { t });
    const ghostUser = newUser('ghost');
    const ghost = await userOn(cluster, C, ghostUser, { t });
    const roomId = newRoomId('crashroom');
    assert.equal((await call(watcher.socket, 'create room', { roomId, roomName: 'Crash' }))?.success, true);
    for (const m of [watcher, ghost]) assert.equal((await call(m.socket, 'join room', { roomId }))?.success, true);
    const offline = record(watcher.socket, 'user offline');

    process.kill(C.pid, 'SIGKILL');
    await C.exited;
    const crashedAt = Date.now();
    const again = await cluster.restart(2);
    t.diagnostic(`restarted ${again.serverId} ${Date.now() - crashedAt} ms after the crash (TTL ${TTL} s)`);

    // Long before the old stats key would expire, the new run must have cleared the old run's state.
    await waitForEntries(offline, (e) => e?.userId === ghostUser.userId, { ms: 5000, what: `user offline for ${ghostUser.userId}, connected only to the crashed run of ${C.serverId}` });
    await waitFor(async () => (await call(watcher.socket, 'get room info', roomId))?.room?.userCount === 1, 3000, {
      what: 'the room count to drop to 1: the crashed run\'s member is gone',
    });
    const { users } = await call(watcher.socket, 'get online users');
    assert.ok(!users.some((u) => u.id === ghostUser.userId), `the crashed run's user is still online: ${JSON.stringify(users)}`);
    assert.deepEqual(await call(watcher.socket, 'private message', { to: ghostUser.userId, content: 'hello?' }), { success: false, error: 'User is offline' });

    // The restarted node is a full member again.
    await waitForStatsIds(A, cluster.ids, 5000, 'after the restart');
    const back = await userOn(cluster, again, newUser('back'), { t });
    const got = once(watcher.socket, 'private message', 5000);
    assert.equal((await call(back.socket, 'private message', { to: watcher.user.userId, content: 'from the new run' }))?.success, true);
    assert.equal((await got).content, 'from the new run');
    assert.equal((await call(back.socket, 'join room', { roomId }))?.success, true);
    assert.equal((await call(watcher.socket, 'get room info', roomId))?.room?.userCount, 2);
  });

  test('SIGSTOP past the liveness TTL, then SIGCONT: peers announce its users offline and its members gone; back, the node registers again and announces them online and joined again, once', { timeout: 60_000 }, async (t) => {
    const TTL = 3;
    const cluster = await startCluster(t, { nodes: 2, statsTtl: TTL });
    const [A, C] = cluster.nodes;
    for (const gw of cluster.nodes) await waitForStatsIds(gw, cluster.ids, TTL * 1000 + 3000, 'before the stall');
    const watcher = await userOn(cluster, A, newUser('watchA'), { t });
    const sleeperUser = newUser('sleeper');
    const sleeper = await userOn(cluster, C, sleeperUser, { t });
    const roomId = newRoomId('stallroom');
    assert.equal((await call(watcher.socket, 'create room', { roomId, roomName: 'Stall' }))?.success, true);
    for (const m of [watcher, sleeper]) assert.equal((await call(m.socket, 'join room', { roomId }))?.success, true);
    const isSleeper = (e) => e?.userId === sleeperUser.userId;
    const offline = record(watcher.socket, 'user offline');
    const online = record(watcher.socket, 'user online');
    const left = record(watcher.socket, 'user left');
    const joined = record(watcher.socket, 'user joined');

    // A frozen VM or a long pause: the process holds its clients but does nothing.
    process.kill(C.pid, 'SIGSTOP');
    let stopped = true;
    t.after(() => stopped && process.kill(C.pid, 'SIGCONT'));
    await waitForEntries(offline, isSleeper, {
      ms: TTL * 1000 + 6000,
      what: `user offline for ${sleeperUser.userId} once peers took the stalled ${C.serverId} for dead`,
    });
    await waitForEntries(left, (e) => isSleeper(e) && e.roomId === roomId, { ms: 3000, what: 'user left for the stalled node\'s member' });
    process.kill(C.pid, 'SIGCONT');
    stopped = false;

    await waitForEntries(online, isSleeper, {
      ms: 10_000,
      what: `user online for ${sleeperUser.userId} once ${C.serverId} resumed and registered again`,
    });
    await waitForEntries(joined, (e) => isSleeper(e) && e.roomId === roomId, { ms: 5000, what: 'user joined for the member back in the room' });
    const back = joined.find((e) => isSleeper(e) && e.roomId === roomId);
    assert.deepEqual(back, { socketId: sleeper.socket.id, userId: sleeperUser.userId, username: sleeperUser.username, roomId, userCount: 2 });
    const { users } = await call(watcher.socket, 'get online users');
    assert.ok(users.some((u) => u.id === sleeperUser.userId), `the resumed node's user is not listed online: ${JSON.stringify(users)}`);
    assert.equal((await call(watcher.socket, 'get room info', roomId))?.room?.userCount, 2);
    // Its socket never left, and talks across nodes again.
    const got = once(sleeper.socket, 'room message', 5000);
    assert.equal((await call(watcher.socket, 'room message', { roomId, message: 'welcome back' }))?.success, true);
    assert.equal((await got).message, 'welcome back');
    // Announced once: no second `user online` for it by now.
    await barrier(watcher.socket);
    assert.deepEqual(online.filter(isSleeper), [{ userId: sleeperUser.userId, username: sleeperUser.username }]);
  });

  test('SIGTERM: server_shutdown on cluster:message, server shutdown to its clients, it leaves /cluster/stats long before its TTL, its users go offline', { timeout: 90_000 }, async (t) => {
    const TTL = 30;
    const DRAIN = 2;
    const cluster = await startCluster(t, { nodes: 3, statsTtl: TTL, args: ['--drain-secs', String(DRAIN), '--grace-secs', '10'] });
    const [A, B, C] = cluster.nodes;
    for (const gw of cluster.nodes) await waitForStatsIds(gw, cluster.ids, 6000, 'before the stop');
    const bus = await watchControlBus(cluster.redis.port);
    t.after(() => bus.close());

    const watcher = await userOn(cluster, A, newUser('watchA'), { t });
    const onB = await userOn(cluster, B, newUser('memberB'), { t });
    const leavingUser = newUser('leaving');
    const leaving = await userOn(cluster, C, leavingUser, { t });
    const leavingPoll = await userOn(cluster, C, newUser('leavingPoll'), { t, transport: { transports: ['polling'] } });
    const roomId = newRoomId('termroom');
    assert.equal((await call(watcher.socket, 'create room', { roomId, roomName: 'Drain' }))?.success, true);
    for (const m of [watcher, onB, leaving]) assert.equal((await call(m.socket, 'join room', { roomId }))?.success, true);
    const offline = record(watcher.socket, 'user offline');
    const leftOnA = record(watcher.socket, 'user left');
    const notices = [leaving, leavingPoll].map((c) => once(c.socket, 'server shutdown', 5000));
    const survivorsShutdown = [watcher, onB].map((c) => record(c.socket, 'server shutdown'));

    const stoppedAt = Date.now();
    process.kill(C.pid, 'SIGTERM');

    for (const [k, n] of notices.entries()) {
      const notice = await n.catch((e) => {
        throw new Error(`server shutdown on the ${k ? 'polling' : 'websocket'} client of the stopping node: ${e.message}`);
      });
      assert.equal(notice.serverId, C.serverId);
      assert.equal(typeof notice.message, 'string');
    }
    // Until the drain ends its sockets are still connected: messages from other nodes still reach
    // them, and the user is not offline. Checked here, asserted at the end (so the rest still runs).
    const drainProblems = [];
    const during = once(leaving.socket, 'private message', 1500);
    const duringAck = await call(watcher.socket, 'private message', { to: leavingUser.userId, content: 'during the drain' });
    if (duringAck?.success !== true) drainProblems.push(`private message from node A during the drain was answered ${JSON.stringify(duringAck)}`);
    if (!(await during.then((m) => m?.content === 'during the drain', () => false))) {
      drainProblems.push(`the private message from node A during the ${DRAIN} s drain did not reach the still-connected client`);
    }
    const earlyOffline = offline.filter((e) => e?.userId === leavingUser.userId).length;
    if (earlyOffline > 0 && leaving.socket.connected) drainProblems.push('user offline was announced while the user\'s socket was still connected (draining)');

    await waitFor(() => bus.messages.some((m) => m.event === 'server_shutdown' && m.serverId === C.serverId), 3000, {
      what: `server_shutdown from ${C.serverId} on cluster:message (seen: ${JSON.stringify(bus.messages)})`,
    });
    const envelope = bus.messages.find((m) => m.event === 'server_shutdown' && m.serverId === C.serverId);
    assert.deepEqual(Object.keys(envelope).sort(), ['data', 'event', 'serverId', 'timestamp'], `envelope ${JSON.stringify(envelope)}`);
    assert.match(envelope.timestamp, RFC3339);

    await waitForStatsIds(A, [cluster.ids[0], cluster.ids[1]], DRAIN * 1000 + 4000 - (Date.now() - stoppedAt), `within the drain (+4 s) of SIGTERM, long before the ${TTL} s TTL`);
    await waitForStatsIds(B, [cluster.ids[0], cluster.ids[1]], 1000, `(node B's view)`);
    t.diagnostic(`stopped node left /cluster/stats ${Date.now() - stoppedAt} ms after SIGTERM (TTL ${TTL} s)`);

    const exit = await Promise.race([C.exited, new Promise((r) => setTimeout(() => r('still running'), 12_000 - (Date.now() - stoppedAt)))]);
    assert.deepEqual(exit, { code: 0, signal: null }, `the stopped node must exit 0 within the grace period: ${JSON.stringify(exit)}`);

    await waitForEntries(offline, (e) => e?.userId === leavingUser.userId, { ms: 4000, what: `user offline for ${leavingUser.userId} (stopped node) on node A` });
    await waitFor(async () => (await call(watcher.socket, 'get room info', roomId))?.room?.userCount === 2, 3000, {
      what: 'the room count on A to drop to 2 after the stopped node closed its member',
    });
    // Closing the sockets is a disconnect: the room gets user left, across nodes (docs/protocol.md,
    // section "Namespaces and events").
    await waitForEntries(leftOnA, (e) => e?.userId === leavingUser.userId && e.roomId === roomId, {
      ms: 3000,
      what: 'user left on node A for the member whose node stopped gracefully',
    });
    assert.equal(leftOnA.find((e) => e.userId === leavingUser.userId).userCount, 2);
    for (const s of [watcher, onB]) await barrier(s.socket);
    for (const list of survivorsShutdown) assert.equal(list.length, 0, `a client of a surviving node got server shutdown: ${JSON.stringify(list)}`);
    assert.deepEqual(drainProblems, [], 'during the drain the stopping node\'s clients are still connected members of the cluster');
  });
});
