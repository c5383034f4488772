// Property test: random JSON shapes (depths past every limit, sizes, types, unicode, binary
// attachments, extra arguments) sent to every event of every namespace, against two real nodes
// on a real redis-server, with socket.io-client. Properties:
// - no node panics or exits, and both stay healthy;
// - every event sent with an ack is answered `{ success: true, ... }` or
//   `{ success: false, error: "<non-empty text>" }` (docs/protocol.md, section "Namespaces and events");
// - the `game update`s of the fuzzed game reach a player on the other node with no seq gap.
// The generator is seeded: FUZZ_SEED=<n> replays a run (the seed is printed), FUZZ_EVENTS sets
// the number of events per socket.
import assert from 'node:assert/strict';
import { connectUser, http, newUser, test, waitFor } from '../e2e/support/gateway.mjs';
import { startCluster } from '../e2e-cluster/support/cluster.mjs';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const EVENTS_PER_SOCKET = Number(process.env.FUZZ_EVENTS ?? 500);

/** mulberry32: a small seeded PRNG, so a failing run is replayed with its seed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const FIELDS = [
  'content', 'roomId', 'to', 'targetSocketId', 'message', 'type', 'username', 'roomName', 'isPrivate',
  'password', 'maxUsers', 'limit', 'gameId', 'socketId', 'userId', 'reason', 'durationSecs', '_placeholder', 'num',
];

function generator(seed, { gameId, peers }) {
  const rnd = prng(seed);
  const int = (n) => Math.floor(rnd() * n);
  const pick = (list) => list[int(list.length)];
  const chance = (p) => rnd() < p;

  function string() {
    switch (int(9)) {
      case 0: return '';
      case 1: return 'x'.repeat(int(3000));
      case 2: return '<script>alert(1)</script> spam ABUSE';
      case 3: return '🎮'.repeat(int(600));
      case 4: return '\u0000\u001f\u2028\ud800 lone surrogate';
      case 5: return pick(['room:x', 'x:members', 'user:admin', '../../etc/passwd', '{"$ne":1}', '*', '%00']);
      case 6: return 'y'.repeat(20_000 + int(200_000));
      case 7: return gameId;
      default: return `s${int(1e6)}`;
    }
  }
  function number() {
    return pick([0, -1, 1, 2 ** 53, -(2 ** 63), 1e308, -1e-308, 0.5, int(2000), 1001, 100, 101]);
  }
  function binary() {
    return Buffer.alloc(int(2000), int(256));
  }
  /** A chain of arrays and objects `depth` levels deep, around `leaf`. */
  function nested(depth, leaf) {
    let v = leaf;
    for (let i = 0; i < depth; i += 1) v = chance(0.5) ? [v] : { [pick(FIELDS)]: v };
    return v;
  }
  function value(budget = 3) {
    const kind = int(budget > 0 ? 9 : 5);
    switch (kind) {
      case 0: return null;
      case 1: return chance(0.5);
      case 2: return number();
      case 3: return string();
      // Binary attachments, and socket.io's placeholder for one written as plain JSON.
      case 4: return chance(0.3) ? binary() : chance(0.3) ? { _placeholder: true, num: int(3) } : string();
      case 5: return Array.from({ length: int(5) }, () => value(budget - 1));
      case 6: {
        const o = {};
        for (let i = int(6); i > 0; i -= 1) o[chance(0.7) ? pick(FIELDS) : string().slice(0, 40)] = value(budget - 1);
        return o;
      }
      // Around the nesting limit (60 below the argument), and past serde_json's 128.
      case 7: return nested(pick([58, 59, 60, 61, 62, 63, 64, 65, 70, 127, 130]), value(0));
      default: return { gameId, move: value(budget - 1), blob: chance(0.2) ? binary() : undefined };
    }
  }
  /** A payload near the event's valid shape: valid fields, some replaced by random values. */
  function nearValid(event) {
    const valid = {
      'chat message': { content: 'hello' },
      'private message': { to: pick(peers), content: 'hi' },
      'set username': `fuzz${int(1000)}`,
      'create room': { roomId: `fz-${seed}-${int(20)}`, roomName: 'Fuzz room', maxUsers: 10 },
      'join room': { roomId: `fz-${seed}-${int(20)}` },
      'leave room': `fz-${seed}-${int(20)}`,
      'room message': { roomId: `fz-${seed}-${int(20)}`, message: 'm' },
      'room history': { roomId: `fz-${seed}-${int(20)}`, limit: int(120) },
      'get room info': `fz-${seed}-${int(20)}`,
      'join game': { gameId },
      'leave game': { gameId: `other-${int(5)}` },
      'game action': { gameId, move: int(9) },
      'broadcast message': { message: 'fuzz announcement' },
      'kick user': { socketId: `no-such-socket-${int(100)}` },
      'ban user': { userId: `fuzz-nobody-${int(100)}`, reason: 'fuzz', durationSecs: 1 + int(5) },
      'unban user': { userId: `fuzz-nobody-${int(100)}` },
    }[event];
    if (valid === undefined || typeof valid !== 'object' || chance(0.3)) return valid;
    const out = { ...valid };
    for (const key of Object.keys(out)) if (chance(0.35)) out[key] = value(2);
    // Never name a real user in admin actions: the fuzz sockets must stay connected.
    if (event === 'ban user' || event === 'unban user') out.userId = `fuzz-nobody-${int(100)}`;
    if (event === 'kick user') out.socketId = `no-such-socket-${int(100)}`;
    if (event === 'game action' && chance(0.5)) out.gameId = gameId;
    return out;
  }
  /** The arguments of one emit: none, one, or several. */
  function args(event) {
    switch (int(6)) {
      case 0: return [];
      case 1: return [value()];
      case 2: return [value(), value()];
      default: {
        const p = nearValid(event);
        return p === undefined ? [] : [p];
      }
    }
  }
  return { args, pick, int };
}

const EVENTS = {
  '/': ['chat message', 'private message', 'set username', 'create room', 'join room', 'leave room', 'room message', 'room history', 'get rooms', 'get room info', 'get online users'],
  '/chat': ['chat message', 'private message'],
  '/game': ['join game', 'leave game', 'game action'],
  '/admin': ['get stats', 'broadcast message', 'kick user', 'ban user', 'unban user'],
};

function describePayload(args) {
  const text = JSON.stringify(args, (_, v) => (v?.type === 'Buffer' ? `<${v.data.length} bytes>` : v));
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

test(`random payloads to every event of every namespace (seed ${SEED})`, { timeout: 180_000 }, async (t) => {
  t.diagnostic(`FUZZ_SEED=${SEED} FUZZ_EVENTS=${EVENTS_PER_SOCKET}`);
  const cluster = await startCluster(t, {
    nodes: 2,
    args: ['--event-rate-limit', '100000', '--event-rate-burst', '100000'],
  });
  const gameId = `fuzz-${SEED}`;
  const as = (node) => ({ url: node.url, token: (u) => cluster.token(u) });

  // Seq watchers in the fuzzed game, never fuzzed themselves: one per node, so what crossed
  // Redis is compared with what was delivered on the node it came from.
  const seen = [];
  const actions = [new Map(), new Map()];
  for (const [n, node] of cluster.nodes.entries()) {
    const watcher = (await connectUser(as(node), newUser(`fuzz-watch-${n}`), { namespace: '/game' })).socket;
    t.after(() => watcher.disconnect());
    watcher.on('game update', (u) => {
      if (u?.gameId !== gameId) return;
      actions[n].set(u.seq, u.action);
      if (n === 1) seen.push(u.seq);
    });
    assert.equal((await watcher.timeout(5000).emitWithAck('join game', { gameId })).success, true);
  }

  // One fuzzing socket per namespace per node; every user of /, /chat, /game can be a `to`.
  const players = [];
  for (const [n, node] of cluster.nodes.entries()) {
    for (const namespace of Object.keys(EVENTS)) {
      const user = newUser(`fuzz-${n}`, namespace === '/admin' ? { role: 'admin' } : {});
      const transport = n === 0 ? { transports: ['websocket'] } : {};
      const { socket } = await connectUser(as(node), user, { namespace, transport });
      t.after(() => socket.disconnect());
      players.push({ node, namespace, socket, user });
    }
  }
  const peers = players.map((p) => p.user.userId);
  for (const p of players.filter((q) => q.namespace === '/game')) {
    assert.equal((await p.socket.timeout(5000).emitWithAck('join game', { gameId })).success, true);
  }
  // The watcher's node subscribes to the game channel asynchronously.
  const warm = await players.find((p) => p.namespace === '/game').socket.timeout(5000).emitWithAck('game action', { gameId });
  await waitFor(() => seen.includes(warm.seq), 10_000, { what: 'the warm-up update at the watcher' });
  const gameSeqs = [warm.seq];

  const failures = [];
  const tally = {};
  await Promise.all(
    players.map(async (p, i) => {
      const gen = generator(SEED + i, { gameId, peers });
      const events = EVENTS[p.namespace];
      // Games this socket is in (ids as sent and as acked), so an accepted action can be checked.
      const joined = new Set(p.namespace === '/game' ? [gameId] : []);
      const idOf = (a) => (typeof a === 'object' && a !== null ? a.gameId : a);
      for (let k = 0; k < EVENTS_PER_SOCKET && failures.length === 0; k += 1) {
        const event = gen.pick(events);
        const args = gen.args(event);
        const where = `${p.node.serverId}${p.namespace} "${event}" #${k} ${describePayload(args)}`;
        if (!p.socket.connected) {
          failures.push(`socket disconnected before ${where}`);
          return;
        }
        let ack;
        try {
          ack = await p.socket.timeout(10_000).emitWithAck(event, ...args);
        } catch (e) {
          failures.push(`no ack (${e.message}) for ${where}`);
          return;
        }
        const clear = ack?.success === true || (ack?.success === false && typeof ack.error === 'string' && ack.error.length > 0);
        if (!clear) failures.push(`unclear answer ${JSON.stringify(ack)} to ${where}`);
        const key = `${p.namespace} ${event} ${ack?.success ? 'accepted' : 'rejected'}`;
        tally[key] = (tally[key] ?? 0) + 1;
        if (event === 'join game' && ack?.success === true) {
          joined.add(idOf(args[0]));
          joined.add(ack.gameId);
        }
        if (event === 'leave game' && ack?.success === true) {
          joined.delete(idOf(args[0]));
          joined.delete(ack.gameId);
        }
        if (event === 'game action' && ack?.success === true) {
          if (!joined.has(args[0]?.gameId)) failures.push(`an action in a game not joined was accepted: ${where}`);
          if (args[0]?.gameId === gameId) gameSeqs.push(ack.seq);
        }
      }
    }),
  );
  t.diagnostic(JSON.stringify(tally));
  assert.deepEqual(failures, [], `FUZZ_SEED=${SEED}`);

  gameSeqs.sort((a, b) => a - b);
  const expected = Array.from({ length: gameSeqs.length }, (_, k) => warm.seq + k);
  assert.deepEqual(gameSeqs, expected, `acked seqs of the fuzzed game have gaps (FUZZ_SEED=${SEED})`);
  await waitFor(() => seen.length >= gameSeqs.length, 15_000, {
    what: `${gameSeqs.length} updates at the watcher on the other node (got ${seen.length})`,
  }).catch((e) => {
    const missing = gameSeqs.filter((s) => !seen.includes(s));
    throw new Error(`${e.message}; missing seqs ${JSON.stringify(missing.slice(0, 20))} (FUZZ_SEED=${SEED})`);
  });
  // Updates from the two nodes interleave in any order; none may be missing or repeated.
  assert.deepEqual([...seen].sort((a, b) => a - b), gameSeqs, `the other node saw a seq gap or a repeat (FUZZ_SEED=${SEED})`);

  await waitFor(() => actions[0].size >= gameSeqs.length, 15_000, { what: 'every update at the watcher on node A' });
  for (const seq of gameSeqs) {
    assert.deepEqual(actions[1].get(seq), actions[0].get(seq), `update ${seq} differs between the nodes (FUZZ_SEED=${SEED})`);
  }

  for (const gw of cluster.nodes) {
    assert.equal(gw.exitCode, undefined, `${gw.serverId} exited (FUZZ_SEED=${SEED})`);
    assert.ok(!/panicked/.test(gw.stderr), `${gw.serverId} panicked (FUZZ_SEED=${SEED}):\n${gw.stderr}`);
    const health = await http(gw, '/health');
    assert.equal(health.status, 200, `${gw.serverId} /health: ${health.text}`);
  }
});
