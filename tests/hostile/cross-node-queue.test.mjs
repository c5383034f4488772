// Attack: make a node lose frames silently with broadcasts from another node. Before the fix a
// broadcast arriving through Redis that met a full socket queue was only logged at debug level
// (the client got later frames with a gap, nothing was counted, nobody was disconnected), and the
// byte budget did not exist. Now the cross-node path applies the local path's policy: a socket
// whose queue is full in packets or over its byte budget is disconnected and counted on the node
// that holds it, while the players who read keep receiving every update. Two real nodes on a
// real redis-server; the sender is on node A, the stalled players and a reader on node B.
import assert from 'node:assert/strict';
import { connectUser, newUser, test, waitFor } from '../e2e/support/gateway.mjs';
import { call, startCluster } from '../e2e-cluster/support/cluster.mjs';
import { bigAction, metric, rssBytes, stalledPlayer, stalledPollingPlayer } from './support/slow-reader.mjs';

const FAST = ['--event-rate-limit', '100000', '--event-rate-burst', '100000'];

/** A `/game` reader on `gw` in `gameId`, recording the seqs it receives. */
async function reader(t, cluster, gw, gameId, transports) {
  const { socket } = await connectUser({ url: gw.url, token: (u) => cluster.token(u) }, newUser('reader'), {
    namespace: '/game',
    transport: { transports },
  });
  t.after(() => socket.disconnect());
  const seqs = [];
  let disconnected = false;
  socket.on('game update', (u) => seqs.push(u.seq));
  socket.on('disconnect', () => (disconnected = true));
  assert.equal((await call(socket, 'join game', { gameId })).success, true);
  return { socket, seqs, isDisconnected: () => disconnected };
}

/** Waits until the watcher on the other node gets an update, so game channels are subscribed. */
async function warmUp(sender, watcher, gameId) {
  const ack = await call(sender, 'game action', { gameId, warmUp: true });
  await waitFor(() => watcher.seqs.includes(ack.seq), 10_000, { what: 'the warm-up action on node B' });
  return ack.seq;
}

test('broadcasts from another node that fill a socket queue (packets) disconnect it on its node, counted', { timeout: 120_000 }, async (t) => {
  const cluster = await startCluster(t, { nodes: 2, args: FAST });
  const [nodeA, nodeB] = cluster.nodes;
  const gameId = `xq-packets-${process.pid}`;
  const sender = await reader(t, cluster, nodeA, gameId, ['websocket']);
  const watcher = await reader(t, cluster, nodeB, gameId, ['websocket']);
  await stalledPollingPlayer(nodeB, cluster.token(newUser('stalled-poll')), gameId);
  const first = await warmUp(sender.socket, watcher, gameId);

  // More small updates than a socket queue holds (4,096 packets), all from node A.
  const TOTAL = 5000;
  const acked = [first];
  for (let i = 0; i < TOTAL; i += 250) {
    const batch = Array.from({ length: 250 }, (_, j) => call(sender.socket, 'game action', { gameId, n: i + j }));
    for (const ack of await Promise.all(batch)) {
      assert.equal(ack.success, true, JSON.stringify(ack));
      acked.push(ack.seq);
    }
  }
  acked.sort((a, b) => a - b);
  await waitFor(() => watcher.seqs.length >= acked.length, 30_000, { what: `${acked.length} updates at the watcher on node B` });

  assert.ok((await metric(nodeB, 'socketio_slow_client_disconnects_total')) >= 1, 'node B did not disconnect the stalled player');
  assert.ok((await metric(nodeB, 'socketio_dropped_frames_total')) >= 1, 'node B did not count the dropped frames');
  assert.deepEqual(watcher.seqs, acked, 'the watcher on node B missed or reordered updates');
  assert.equal(watcher.isDisconnected(), false);
  for (const gw of cluster.nodes) assert.ok(!/panicked/.test(gw.stderr), gw.stderr);
});

test('broadcasts from another node that take a stalled socket over its byte budget disconnect it; memory stays bounded', { timeout: 180_000 }, async (t) => {
  const cluster = await startCluster(t, { nodes: 2, args: FAST });
  const [nodeA, nodeB] = cluster.nodes;
  const gameId = `xq-bytes-${process.pid}`;
  const sender = await reader(t, cluster, nodeA, gameId, ['websocket']);
  const readers = [
    await reader(t, cluster, nodeB, gameId, ['websocket']),
    await reader(t, cluster, nodeB, gameId, ['polling']),
  ];
  const stalled = await stalledPlayer(nodeB, cluster.token(newUser('stalled-ws')), gameId);
  t.after(() => stalled.ws.terminate());
  const acked = [await warmUp(sender.socket, readers[0], gameId)];
  await waitFor(() => readers[1].seqs.includes(acked[0]), 10_000, { what: 'the warm-up at the polling reader' });

  const rssBefore = rssBytes(nodeB.pid);
  const started = Date.now();
  let cutAt;
  for (let i = 0; i < 60; i += 1) {
    const due = acked[acked.length - 2];
    if (due !== undefined) {
      await waitFor(() => readers.every((r) => r.seqs.includes(due)), 20_000, { what: `seq ${due} at both readers on node B` });
    }
    const ack = await call(sender.socket, 'game action', bigAction(gameId, 900_000, i));
    assert.equal(ack.success, true, JSON.stringify(ack));
    acked.push(ack.seq);
    if (cutAt === undefined && i % 5 === 4 && (await metric(nodeB, 'socketio_queue_budget_disconnects_total')) >= 1) {
      cutAt = Date.now() - started;
    }
  }
  const last = acked[acked.length - 1];
  await waitFor(() => readers.every((r) => r.seqs.includes(last)), 20_000, { what: 'the last update at both readers' });
  const grown = rssBytes(nodeB.pid) - rssBefore;
  t.diagnostic(`cut off after ${cutAt} ms; node B RSS grew by ${Math.round(grown / 2 ** 20)} MiB`);

  assert.equal(await metric(nodeB, 'socketio_queue_budget_disconnects_total'), 1, 'exactly the stalled player is cut off on node B');
  assert.ok(cutAt !== undefined && cutAt < 10_000, `the stalled player was cut off after ${cutAt} ms`);
  assert.ok(grown < 100 * 2 ** 20, `node B RSS grew by ${Math.round(grown / 2 ** 20)} MiB for 60 actions of 0.9 MB`);
  for (const r of readers) {
    assert.deepEqual(r.seqs, acked, 'a reader on node B missed or reordered updates');
    assert.equal(r.isDisconnected(), false);
  }
  stalled.resume();
  await waitFor(() => stalled.frames.some((f) => f === '41/game,'), 20_000, { what: 'the DISCONNECT packet at the stalled player' });
  for (const gw of cluster.nodes) assert.ok(!/panicked/.test(gw.stderr), gw.stderr);
});
