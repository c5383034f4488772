// Attack: a `game action` nested deeper than the Redis adapter's decoder allows. Before the fix
// the sending node acked it with a `seq` and delivered it locally, but the other node could not
// decode the broadcast, so its players saw a `game update` seq gap. Now every event refuses a
// payload the cluster cannot carry, at the edge, before any state changes (no seq is taken).
// Two real nodes on a real redis-server, socket.io-client on each.
import assert from 'node:assert/strict';
import { newUser, test, waitFor } from '../e2e/support/gateway.mjs';
import { expectRejected } from '../e2e/support/rules.mjs';
import { call, record, startCluster, userOn } from '../e2e-cluster/support/cluster.mjs';

/** Deepest payload nesting accepted (gateway/src/validation.rs `MAX_PAYLOAD_DEPTH`). */
const MAX_PAYLOAD_DEPTH = 60;

/** `{ gameId, a: [[...[1]...]] }` whose innermost value sits at `level` (the object is level 0). */
function nestedAction(gameId, level) {
  let v = 1;
  for (let i = 1; i < level; i += 1) v = [v];
  return { gameId, a: v };
}

test('a payload nested deeper than the cluster carries is refused at the edge; no seq gap on the other node', async (t) => {
  const cluster = await startCluster(t, { nodes: 2 });
  const [nodeA, nodeB] = cluster.nodes;
  const gameId = `deep-${process.pid}`;
  const sender = await userOn(cluster, nodeA, newUser('deep-sender'), { namespace: '/game', t });
  const watcher = await userOn(cluster, nodeB, newUser('deep-watcher'), { namespace: '/game', t });
  for (const { socket } of [sender, watcher]) {
    assert.equal((await call(socket, 'join game', { gameId })).success, true);
  }
  const updates = record(watcher.socket, 'game update');
  // The watcher's node subscribes to the game's channel asynchronously: wait until an action
  // crosses before the attack.
  const first = await call(sender.socket, 'game action', { gameId, move: 'warm-up' });
  assert.equal(first.success, true, JSON.stringify(first));
  await waitFor(() => updates.some((u) => u.seq === first.seq), 10_000, { what: 'the warm-up action on the other node' });

  const { ack } = await expectRejected(sender.socket, 'game action', nestedAction(gameId, MAX_PAYLOAD_DEPTH + 1));
  assert.match(ack.error, /nested too deeply/, ack.error);
  // Past serde_json's own limit (128) the refusal says the same.
  const { ack: deeper } = await expectRejected(sender.socket, 'game action', nestedAction(gameId, 200));
  assert.match(deeper.error, /nested too deeply/, deeper.error);

  // The deepest accepted payload crosses intact; the seq right after the warm-up was not consumed.
  const deepest = nestedAction(gameId, MAX_PAYLOAD_DEPTH);
  const deep = await call(sender.socket, 'game action', deepest);
  assert.equal(deep.success, true, JSON.stringify(deep));
  assert.equal(deep.seq, first.seq + 1, 'the refused action consumed a seq');
  const last = await call(sender.socket, 'game action', { gameId, move: 'after' });
  assert.equal(last.seq, deep.seq + 1);
  await waitFor(() => updates.some((u) => u.seq === last.seq), 10_000, { what: 'the last action on the other node' });

  const seqs = updates.map((u) => u.seq);
  assert.deepEqual(seqs, [first.seq, deep.seq, last.seq], `seq gap on the other node: ${JSON.stringify(seqs)}`);
  assert.deepEqual(updates[1].action, deepest);
  for (const gw of cluster.nodes) {
    assert.equal(gw.exitCode, undefined, `${gw.serverId} exited`);
    assert.ok(!/panicked/.test(gw.stderr), `${gw.serverId} panicked:\n${gw.stderr}`);
  }
});

test('an object the adapter would read as a binary attachment is refused at the edge', async (t) => {
  const cluster = await startCluster(t, { nodes: 2 });
  const [nodeA, nodeB] = cluster.nodes;
  const gameId = `placeholder-${process.pid}`;
  const sender = await userOn(cluster, nodeA, newUser('ph-sender'), { namespace: '/game', t });
  const watcher = await userOn(cluster, nodeB, newUser('ph-watcher'), { namespace: '/game', t });
  for (const { socket } of [sender, watcher]) {
    assert.equal((await call(socket, 'join game', { gameId })).success, true);
  }
  const updates = record(watcher.socket, 'game update');
  const first = await call(sender.socket, 'game action', { gameId, move: 'warm-up' });
  await waitFor(() => updates.some((u) => u.seq === first.seq), 10_000, { what: 'the warm-up action on the other node' });

  // Delivered as is on the sending node, it reached the other node as `null` before the fix.
  const { ack } = await expectRejected(sender.socket, 'game action', { gameId, fake: { _placeholder: true, num: 0 } });
  assert.match(ack.error, /placeholder/, ack.error);
  // Objects merely resembling it travel unchanged.
  const lookalike = { gameId, fake: { _placeholder: true, num: 0, other: 1 } };
  const next = await call(sender.socket, 'game action', lookalike);
  assert.equal(next.seq, first.seq + 1, 'the refused action consumed a seq');
  await waitFor(() => updates.some((u) => u.seq === next.seq), 10_000, { what: 'the look-alike on the other node' });
  assert.deepEqual(updates.find((u) => u.seq === next.seq).action, lookalike);
});
