// The deployed topology end to end: real redis-server, three gateway processes and real nginx
// running the shipped nginx/nginx.conf (only upstream.conf and listen.conf swapped), all started and
// stopped here. Clients leave from distinct loopback source addresses (127.N.0.1: ip_hash keys on
// the first three IPv4 octets) so they land on different nodes; the `welcome` serverId proves where.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { client, connected, newRoomId, newUser, once, test, waitFor } from '../e2e/support/gateway.mjs';
import { call, fromAddress, record, startCluster, startNginx, waitForEntries } from './support/cluster.mjs';

// Heartbeats shorter than the defaults (25 s + 60 s): a long-polling session its client abandoned
// without a word (see the rolling restart) is closed by the node once they run out.
const PING_INTERVAL_MS = 5000;
const PING_TIMEOUT_MS = 5000;
const NODE_ARGS = [
  '--trusted-proxies', '127.0.0.1', '--drain-secs', '1', '--grace-secs', '5',
  '--ping-interval-ms', String(PING_INTERVAL_MS), '--ping-timeout-ms', String(PING_TIMEOUT_MS),
];

/** Redis, three gateways on fixed ports (so a node can restart on its port) and nginx in front. */
async function startTopology(t) {
  const cluster = await startCluster(t, { nodes: 3, statsTtl: 3, fixedPorts: true, args: NODE_ARGS });
  const nginx = await startNginx(t, cluster.ports);
  const probeSids = new Set();
  const addressOf = await probeAddresses(cluster, nginx, probeSids);
  // A probe closes while its next long-poll GET may already be on its way; that GET is answered 400
  // "Session ID unknown" (correctly: the session is gone). Log checks leave out the probes' sessions.
  const clientLog = () => nginx.accessLog().filter((l) => !probeSids.has(new URLSearchParams(l.request?.split(' ')[1]?.split('?')[1] ?? '').get('sid')));
  return { cluster, nginx, addressOf, clientLog };
}

/**
 * Finds, for every node, a source address 127.N.0.1 that nginx's ip_hash sends to it: one
 * long-polling probe per address, reading the `welcome` serverId. Fails if the addresses do not
 * spread over all three nodes (e.g. if source binding did not work and every probe came from 127.0.0.1).
 */
async function probeAddresses(cluster, nginx, probeSids) {
  const addressOf = new Map();
  const landed = [];
  for (let first = 1; first <= 60 && addressOf.size < cluster.ids.length; first += 10) {
    const batch = [];
    for (let n = first; n < first + 10; n++) {
      const addr = `127.${n}.0.1`;
      batch.push(
        (async () => {
          const s = client(nginx.url, { token: cluster.token(newUser('probe')), transport: fromAddress(addr, ['polling']) });
          const welcome = once(s, 'welcome', 10_000);
          try {
            await connected(s);
            probeSids.add(s.io.engine.id);
            const w = await welcome;
            landed.push(`${addr}->${w.serverId}`);
            if (!addressOf.has(w.serverId)) addressOf.set(w.serverId, addr);
          } finally {
            s.disconnect();
          }
        })(),
      );
    }
    await Promise.all(batch);
  }
  assert.equal(addressOf.size, cluster.ids.length, `source addresses 127.1-60.0.1 did not reach all three nodes through ip_hash: ${landed.join(', ')}`);
  const fromLog = nginx.accessLog().filter((l) => l.addr).map((l) => l.addr);
  assert.ok(fromLog.some((a) => a === '127.1.0.1'), `nginx did not see the bound source address 127.1.0.1: ${fromLog.slice(0, 10).join(', ')}`);
  return addressOf;
}

const KINDS = {
  polling: ['polling'],
  websocket: ['websocket'],
  upgrade: undefined,
};

/**
 * A client through nginx from `addr` with reconnection on (socket.io-client defaults, shortened
 * delays), recording its welcomes, disconnects and connect errors.
 */
async function nginxClient(t, topo, addr, kind, user = newUser(kind)) {
  const socket = client(topo.nginx.url, {
    token: topo.cluster.token(user),
    transport: fromAddress(addr, KINDS[kind]),
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 1000,
  });
  t.after(() => socket.disconnect());
  const c = {
    socket,
    user,
    addr,
    kind,
    welcomes: record(socket, 'welcome'),
    disconnects: record(socket, 'disconnect'),
    errors: record(socket, 'connect_error'),
    shutdowns: record(socket, 'server shutdown'),
    reconnects: 0,
  };
  socket.io.on('reconnect', () => (c.reconnects += 1));
  await connected(socket);
  await waitFor(() => c.welcomes.length >= 1, 10_000, { what: `welcome for the ${kind} client from ${addr}` });
  c.serverId = () => c.welcomes.at(-1)?.serverId;
  c.name = `${kind} client from ${addr}`;
  return c;
}

/** Sends a broadcast chat message from `from` and waits for it on every client in `to`. */
async function chatReaches(from, to, ms = 5000) {
  const seen = to.map((c) => record(c.socket, 'chat message'));
  const ack = await call(from.socket, 'chat message', { content: `from ${from.name} at ${Date.now()}` });
  assert.equal(ack?.success, true, `chat message from ${from.name}: ${JSON.stringify(ack)}`);
  for (const [i, list] of seen.entries()) {
    await waitForEntries(list, (m) => m?.id === ack.messageId, {
      ms,
      what: `chat from the ${from.name} (node ${from.serverId()}) on the ${to[i].name} (node ${to[i].serverId()})`,
    });
  }
}

describe('nginx + three nodes + Redis', () => {
  test('distinct source addresses land on distinct nodes; polling-only, websocket and upgrading clients work through nginx; cross-node messages arrive', { timeout: 90_000 }, async (t) => {
    const topo = await startTopology(t);
    const { cluster, nginx, addressOf } = topo;
    const clients = [];
    for (const id of cluster.ids) {
      for (const kind of Object.keys(KINDS)) clients.push(await nginxClient(t, topo, addressOf.get(id), kind));
    }
    for (const c of clients) {
      assert.equal(c.serverId(), cluster.ids.find((id) => addressOf.get(id) === c.addr), `${c.name} landed on ${c.serverId()}`);
    }
    assert.equal(new Set(clients.map((c) => c.serverId())).size, 3, 'clients must sit on all three nodes');

    for (const c of clients.filter((x) => x.kind === 'upgrade')) {
      await waitFor(() => c.socket.io.engine?.transport?.name === 'websocket', 10_000, { what: `the ${c.name} to upgrade to websocket through nginx` });
    }
    const polling = clients.filter((c) => c.kind === 'polling');
    for (const c of polling) assert.equal(c.socket.io.engine.transport.name, 'polling');

    // Several rounds of cross-node traffic: each polling client makes many requests, all of which
    // must reach its own node (a request on another node answers 400 "Session ID unknown").
    for (let round = 0; round < 3; round++) {
      for (const from of clients) await chatReaches(from, clients.filter((c) => c !== from));
    }

    const [a, b] = [clients.find((c) => c.serverId() === cluster.ids[0] && c.kind === 'polling'), clients.find((c) => c.serverId() === cluster.ids[2] && c.kind === 'websocket')];
    const pm = once(a.socket, 'private message', 5000);
    assert.equal((await call(b.socket, 'private message', { to: a.user.userId, content: 'through nginx' }))?.success, true);
    assert.equal((await pm).content, 'through nginx');

    const roomId = newRoomId('ngx');
    assert.equal((await call(clients[0].socket, 'create room', { roomId, roomName: 'Behind nginx' }))?.success, true);
    for (const c of clients) assert.equal((await call(c.socket, 'join room', { roomId }))?.success, true, `${c.name} join`);
    const info = await call(clients.at(-1).socket, 'get room info', roomId);
    assert.equal(info?.room?.userCount, clients.length, `room count through nginx: ${JSON.stringify(info)}`);

    for (const c of clients) {
      assert.equal(c.disconnects.length, 0, `${c.name} was disconnected: ${JSON.stringify(c.disconnects)}`);
      assert.equal(c.errors.length, 0, `${c.name} had connect errors: ${JSON.stringify(c.errors.map((e) => e.message))}`);
    }
    const polled = topo.clientLog().filter((l) => l.request?.includes('transport=polling') && l.request.includes('sid=') && l.status === 200);
    assert.ok(polled.length >= 20, `expected the polling clients' requests in nginx's access log, found ${polled.length}`);
    const bad = topo.clientLog().filter((l) => !l.addr || l.status >= 400);
    assert.deepEqual(bad.map((l) => l.line), [], 'nginx answered errors');
  });

  test('kill one gateway: its clients reconnect through nginx to the others and keep chatting; clients of surviving nodes see no error', { timeout: 90_000 }, async (t) => {
    const topo = await startTopology(t);
    const { cluster, nginx, addressOf } = topo;
    const clients = [];
    for (const id of cluster.ids) {
      for (const kind of ['polling', 'websocket']) clients.push(await nginxClient(t, topo, addressOf.get(id), kind));
    }
    const victimId = cluster.ids[2];
    const victims = clients.filter((c) => c.serverId() === victimId);
    const survivors = clients.filter((c) => c.serverId() !== victimId);
    assert.equal(victims.length, 2);
    const survivorAddrs = new Set(survivors.map((c) => c.addr));
    const logMark = topo.clientLog().length;

    process.kill(cluster.nodes[2].pid, 'SIGKILL');
    await cluster.nodes[2].exited;
    const killedAt = Date.now();

    for (const v of victims) {
      await waitFor(() => v.welcomes.length >= 2 && v.socket.connected, 20_000, {
        what: `the ${v.name} to reconnect through nginx after its node died (welcomes ${JSON.stringify(v.welcomes.map((w) => w.serverId))}, errors ${JSON.stringify(v.errors.map((e) => e.message))})`,
      });
      assert.notEqual(v.serverId(), victimId);
      assert.ok(cluster.ids.slice(0, 2).includes(v.serverId()), `${v.name} reconnected to ${v.serverId()}`);
    }
    t.diagnostic(`victims reconnected ${Date.now() - killedAt} ms after SIGKILL, to ${victims.map((v) => v.serverId()).join(', ')}`);

    for (let round = 0; round < 2; round++) {
      for (const from of clients) await chatReaches(from, clients.filter((c) => c !== from));
    }

    for (const s of survivors) {
      assert.equal(s.disconnects.length, 0, `${s.name} (surviving node) was disconnected: ${JSON.stringify(s.disconnects)}`);
      assert.equal(s.errors.length, 0, `${s.name} (surviving node) had connect errors`);
      assert.equal(s.welcomes.length, 1);
    }
    const survivorLines = topo.clientLog().slice(logMark).filter((l) => survivorAddrs.has(l.addr));
    assert.ok(survivorLines.length > 0, 'no request of a surviving client was logged after the kill: the check below would be empty');
    const survivorErrors = topo.clientLog().slice(logMark).filter((l) => survivorAddrs.has(l.addr) && l.status >= 400);
    assert.deepEqual(survivorErrors.map((l) => l.line), [], 'nginx answered errors to clients of surviving nodes');
  });

  test('rolling restart of all three nodes (SIGTERM, wait ready): every client ends connected; reconnects per client reported', { timeout: 240_000 }, async (t) => {
    const topo = await startTopology(t);
    const { cluster, addressOf } = topo;
    const clients = [];
    for (const id of cluster.ids) {
      for (const kind of ['polling', 'websocket']) clients.push(await nginxClient(t, topo, addressOf.get(id), kind));
    }
    for (const c of clients) c.home = c.serverId();

    for (let i = 0; i < cluster.nodes.length; i++) {
      const gw = cluster.nodes[i];
      const onIt = clients.filter((c) => c.serverId() === gw.serverId);
      process.kill(gw.pid, 'SIGTERM');
      const exit = await Promise.race([gw.exited, new Promise((r) => setTimeout(() => r('still running after 8 s'), 8000))]);
      assert.deepEqual(exit, { code: 0, signal: null }, `${gw.serverId} after SIGTERM`);
      for (const c of onIt) assert.ok(c.shutdowns.some((s) => s?.serverId === gw.serverId), `${c.name} got no server shutdown from ${gw.serverId}`);
      await cluster.restart(i);
      // A polling client that moved while its node was down is only settled once it is back on
      // the node its address hashes to: as soon as nginx sends that address home again (when the
      // node's fail_timeout ends, at the client's next long-poll request, up to a ping interval
      // later), the session it has elsewhere answers "Session ID unknown" and it reconnects. Waiting
      // for "all connected" alone let that reconnect land on a later step (the `get online users`
      // below: no ack, socket disconnected). WebSocket clients stay wherever they reconnected.
      const unsettled = () => clients.filter((c) => !c.socket.connected || (c.kind === 'polling' && c.serverId() !== c.home));
      await waitFor(() => unsettled().length === 0, 45_000, {
        what: `every client connected, polling ones on their home node, after restarting ${gw.serverId} (not yet: ${unsettled().map((c) => `${c.name} on ${c.serverId()}`).join(', ')})`,
      });
    }

    const report = clients.map((c) => `${c.name}: ${c.reconnects} reconnect(s), now on ${c.serverId()}`);
    t.diagnostic(`reconnects per client: ${report.join('; ')}`);
    for (const c of clients) {
      assert.ok(c.socket.connected, `${c.name} is not connected at the end`);
      assert.ok(c.reconnects >= 1, `${c.name} sat on a node that was restarted but never reconnected`);
    }

    await chatReaches(clients[0], clients.slice(1), 8000);
    await chatReaches(clients.at(-1), clients.slice(0, -1), 8000);

    // Presence is exactly the live sockets: nothing stale from the stopped node processes. A
    // polling client that moved to another node while its own restarted, and came home when
    // nginx sent its next long-poll there ("Session ID unknown"), left a session behind that
    // the other node cannot know is abandoned until its heartbeat runs out; that session is
    // listed until then, so the wait covers one heartbeat (interval + timeout) past it.
    await waitFor(async () => {
      const { users } = await call(clients[0].socket, 'get online users');
      const ours = new Set(clients.map((c) => c.user.userId));
      const listed = users.filter((u) => ours.has(u.id)).map((u) => u.socketId).sort();
      const live = clients.map((c) => c.socket.id).sort();
      if (JSON.stringify(listed) === JSON.stringify(live)) return true;
      // Thrown, not returned: waitFor reports the last mismatch if it never clears.
      const stale = listed.filter((id) => !live.includes(id));
      const missing = clients.filter((c) => !listed.includes(c.socket.id)).map((c) => `${c.name} (${c.socket.id} on ${c.serverId()})`);
      throw new Error(`listed but not live: ${JSON.stringify(stale)}; live but not listed: ${JSON.stringify(missing)}`);
    }, PING_INTERVAL_MS + PING_TIMEOUT_MS + 8000, { interval: 250, what: 'get online users to list exactly the current socket of every client' });
  });
});
