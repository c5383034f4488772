// Attack: pin the node's memory with a player that stops reading. Every `game action` (up to
// the 1 MB payload limit) goes to every player of the game; before the fix a stalled player's
// queue was bounded only in packets (4,096), so it held every frame until its heartbeat timed
// out. Now each socket's queue has a byte budget (SOCKET_QUEUE_BYTES): the stalled player is cut
// off within seconds, counted in /metrics, and the players who read (WebSocket and long-polling)
// keep receiving every update (WebSocket, long-polling, upgraded). One real node, socket.io-client players, a raw stalled WebSocket.
import assert from 'node:assert/strict';
import { ask, connectUser, newUser, startGateway, test, waitFor } from '../e2e/support/gateway.mjs';
import { bigAction, metric, rssBytes, stalledPlayer } from './support/slow-reader.mjs';

const ACTIONS = 150;
const ACTION_BYTES = 900_000;

test('a player that stops reading is cut off within seconds; memory stays bounded; the others receive everything', { timeout: 180_000 }, async (t) => {
  const gw = await startGateway(t, { args: ['--event-rate-limit', '1000', '--event-rate-burst', '1000'] });
  const gameId = `stall-${process.pid}`;
  const sender = (await connectUser(gw, newUser('sender'), { namespace: '/game', transport: { transports: ['websocket'] } })).socket;
  const readers = [
    (await connectUser(gw, newUser('ws-reader'), { namespace: '/game', transport: { transports: ['websocket'] } })).socket,
    (await connectUser(gw, newUser('poll-reader'), { namespace: '/game', transport: { transports: ['polling'] } })).socket,
    (await connectUser(gw, newUser('upgrade-reader'), { namespace: '/game' })).socket,
  ];
  // The third reader's bytes are counted first on polling, then on the upgraded WebSocket.
  await waitFor(() => readers[2].io.engine.transport.name === 'websocket', 10_000, { what: 'the upgrade to WebSocket' });
  t.after(() => [sender, ...readers].forEach((s) => s.disconnect()));
  for (const s of [sender, ...readers]) assert.equal((await ask(s, 'join game', { gameId })).success, true);
  const stalled = await stalledPlayer(gw, gw.token(newUser('stalled')), gameId);
  t.after(() => stalled.ws.terminate());

  const seen = readers.map((r) => {
    const seqs = [];
    r.on('game update', (u) => seqs.push(u.seq));
    return seqs;
  });
  const disconnected = readers.map(() => false);
  readers.forEach((r, i) => r.on('disconnect', () => (disconnected[i] = true)));

  const rssBefore = rssBytes(gw.pid);
  const started = Date.now();
  let cutAt;
  const acked = [];
  for (let i = 0; i < ACTIONS; i += 1) {
    // The readers read as fast as they can; keep at most two updates in flight to each, so
    // only a client that does not read at all can be over the budget.
    if (acked.length >= 2) {
      const due = acked[acked.length - 2];
      await waitFor(() => seen.every((s) => s.includes(due)), 20_000, { what: `seq ${due} at every reader` });
    }
    const ack = await ask(sender, 'game action', bigAction(gameId, ACTION_BYTES, i));
    assert.equal(ack?.success, true, `action ${i}: ${JSON.stringify(ack)}`);
    acked.push(ack.seq);
    if (cutAt === undefined && i % 5 === 4 && (await metric(gw, 'socketio_queue_budget_disconnects_total')) >= 1) {
      cutAt = Date.now() - started;
    }
  }
  const last = acked[acked.length - 1];
  await waitFor(() => seen.every((s) => s.includes(last)), 20_000, { what: 'the last update at every reader' });
  const rssAfter = rssBytes(gw.pid);

  assert.equal(await metric(gw, 'socketio_queue_budget_disconnects_total'), 1, 'exactly the stalled player is cut off');
  assert.ok(cutAt !== undefined && cutAt < 10_000, `the stalled player was cut off after ${cutAt} ms`);
  const grown = rssAfter - rssBefore;
  t.diagnostic(`cut off after ${cutAt} ms; RSS grew by ${Math.round(grown / 2 ** 20)} MiB`);
  assert.ok(grown < 150 * 2 ** 20, `RSS grew by ${Math.round(grown / 2 ** 20)} MiB for ${ACTIONS} actions of ${ACTION_BYTES} bytes`);
  for (const [i, seqs] of seen.entries()) {
    assert.deepEqual(seqs, acked, `reader ${i} missed or reordered updates`);
    assert.equal(disconnected[i], false, `reader ${i} was disconnected`);
  }

  // Reading again, the stalled client finds a gap-free prefix of the updates, then the
  // DISCONNECT of /game: it is told, as far as the protocol allows.
  stalled.resume();
  await waitFor(() => stalled.frames.some((f) => f === '41/game,'), 20_000, { what: 'the DISCONNECT packet at the stalled player' });
  const got = stalled.frames
    .filter((f) => typeof f === 'string' && f.startsWith('42/game,["game update"'))
    .map((f) => JSON.parse(f.slice('42/game,'.length))[1].seq);
  assert.ok(got.length < ACTIONS, `the stalled player received all ${got.length} updates`);
  assert.deepEqual(got, acked.slice(0, got.length), 'the stalled player got a gap');
  assert.equal(gw.exitCode, undefined, 'the node exited');
  assert.ok(!/panicked/.test(gw.stderr), gw.stderr);
});

test('a client that stops reading but keeps asking for room history is cut off; its answers do not pile up', { timeout: 120_000 }, async (t) => {
  const gw = await startGateway(t, { args: ['--event-rate-limit', '100000', '--event-rate-burst', '100000'] });
  const roomId = `hist-${process.pid}`;
  const writer = (await connectUser(gw, newUser('hist-writer'), { transport: { transports: ['websocket'] } })).socket;
  t.after(() => writer.disconnect());
  assert.equal((await ask(writer, 'create room', { roomId, roomName: 'History' })).success, true);
  assert.equal((await ask(writer, 'join room', { roomId })).success, true);
  await Promise.all(Array.from({ length: 100 }, (_, i) => ask(writer, 'room message', { roomId, message: `${i} ${'h'.repeat(990)}` })));
  const full = await ask(writer, 'room history', { roomId, limit: 100 });
  assert.equal(full.messages?.length, 100, JSON.stringify(full).slice(0, 300));

  // Raw WebSocket on `/` that stops reading and keeps sending requests with acks: each answer
  // is about 100 KB; 400 of them would be 40 MB held for it.
  const { rawWebSocket } = await import('../e2e/support/raw.mjs');
  const raw = await rawWebSocket(gw, { token: gw.token(newUser('hist-stalled')) });
  t.after(() => raw.ws.terminate());
  raw.ws._socket.pause();
  const rssBefore = rssBytes(gw.pid);
  for (let i = 0; i < 400; i += 1) raw.send(`42${i}["room history",${JSON.stringify({ roomId, limit: 100 })}]`);
  await waitFor(async () => (await metric(gw, 'socketio_queue_budget_disconnects_total')) >= 1, 20_000, {
    what: 'the stalled asker to be cut off',
  });
  const grown = rssBytes(gw.pid) - rssBefore;
  t.diagnostic(`RSS grew by ${Math.round(grown / 2 ** 20)} MiB`);
  assert.ok(grown < 30 * 2 ** 20, `RSS grew by ${Math.round(grown / 2 ** 20)} MiB`);
  // The node still serves others.
  assert.equal((await ask(writer, 'room history', { roomId, limit: 1 })).success, true);
  assert.ok(!/panicked/.test(gw.stderr), gw.stderr);
});
