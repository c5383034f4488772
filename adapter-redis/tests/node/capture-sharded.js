// Records the Redis traffic of Node's sharded adapter (`createShardedAdapter` from
// @socket.io/redis-adapter 8.3.0, socket.io 4.8.4, node-redis 4.7.1 cluster clients) on a real
// three-primary Redis Cluster, with MONITOR on every primary, for each subscription mode.
//
//   node capture-sharded.js <out-dir> [host:port,...]
//
// Without node addresses it starts its own cluster (three primaries, one replica each) from
// `redis-server` and `redis-cli` (Debian's redis-server and redis-tools) on free ports in a temp
// dir, and kills it by PID on exit. It writes <out-dir>/static.txt, dynamic.txt and
// dynamic-private.txt, and, on its own cluster only, failover.txt (it kills a primary); the
// README next to them says what each section shows. Server uids and socket ids are random per run: the files show
// them as <uid:A> and <sid:a1> and list the real values in their header.
"use strict";
const fs = require("fs");
const path = require("path");
const http = require("http");
const { execFileSync } = require("child_process");
const { Server } = require("socket.io");
const { io: ioc } = require("socket.io-client");
const { createShardedAdapter } = require("@socket.io/redis-adapter");
const { createCluster } = require("redis");
const keySlot = require("cluster-key-slot");
const { Resp, waitFor, sleep, startCluster, serverByPort, primaries, owns, migrateSlot, shardNumSub } = require("./redis-cluster");
// Long enough for every SPUBLISH, delivery and reply of one step to land in MONITOR.
const SETTLE_MS = 400;

// ---- recording ----

// How long one step may take before the capture records that it never finished.
const STEP_TIMEOUT_MS = 20000;

// Returns section(title, what, fn): runs one step, then appends its header, the traffic it
// caused and what was observed to `out`.
function sectionWriter(rec, out) {
  return async (title, what, fn) => {
    out.push("", `=== ${title}`, `# ${what}`);
    let result;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no outcome within ${STEP_TIMEOUT_MS / 1000} s`)), STEP_TIMEOUT_MS);
    });
    try {
      result = await Promise.race([fn(), timeout]);
    } catch (e) {
      result = `error: ${e.message}`;
    } finally {
      clearTimeout(timer);
    }
    await sleep(SETTLE_MS);
    if (result !== undefined) rec.event(`result ${JSON.stringify(result)}`);
    out.push(...rec.take());
  };
}

class Recorder {
  constructor(prims) {
    this.prims = prims;
    this.lines = [];
    this.names = new Map(); // "127.0.0.1:port" -> connection name
    this.monitors = [];
    this.events = [];
    this.substitutions = []; // [real, placeholder]
  }
  async start() {
    for (const p of this.prims) {
      const m = await Resp.connect(p.port);
      await m.cmd("MONITOR");
      m.onPush = (line) => this.onMonitor(p.label, line);
      this.monitors.push(m);
    }
  }
  onMonitor(label, line) {
    // 1733520000.123456 [0 127.0.0.1:54321] "CMD" "arg" ...
    const m = /^(\d+\.\d+) \[\d+ ([^\]]+)\] (.*)$/.exec(line);
    if (!m) return;
    const [, ts, addr, rest] = m;
    const setName = /^"client" "setname" "([^"]+)"$/i.exec(rest);
    if (setName) this.names.set(addr, setName[1]);
    this.lines.push({ ts: Number(ts), label, addr, rest });
  }
  event(text) {
    this.events.push(text);
  }
  sub(text) {
    for (const [real, ph] of this.substitutions) text = text.split(real).join(ph);
    return text;
  }
  // Everything recorded since the last take, as text.
  take() {
    const lines = this.lines.splice(0).sort((a, b) => a.ts - b.ts);
    const out = [];
    for (const l of lines) {
      if (/^"client" "setinfo"/i.test(l.rest)) continue;
      const who = this.names.get(l.addr) || l.addr;
      if (who === "capture") continue;
      out.push(`  ${l.label} ${who.padEnd(6)} ${this.sub(l.rest)}`);
    }
    // A client library retrying a dead node logs the same error many times a second: one
    // line per distinct error, with its count, keeps the file readable.
    const counted = new Map();
    for (const e of this.events.splice(0)) {
      const key = e.includes(" redis error ") ? e : `${counted.size}\0${e}`;
      counted.set(key, (counted.get(key) || 0) + 1);
    }
    for (const [key, n] of counted) {
      const e = key.includes("\0") ? key.slice(key.indexOf("\0") + 1) : key;
      out.push(`  => ${this.sub(e)}${n > 1 ? ` (${n} times)` : ""}`);
    }
    return out;
  }
  // Adds a MONITOR on one more primary (a promoted replica).
  async watch(p) {
    const m = await Resp.connect(p.port);
    await m.cmd("MONITOR");
    m.onPush = (line) => this.onMonitor(p.label, line);
    this.monitors.push(m);
  }
  stop() {
    for (const m of this.monitors) m.close();
  }
}

const enc = (x) => (Buffer.isBuffer(x) || x instanceof ArrayBuffer ? `<binary ${[...Buffer.from(x)].join(",")}>` : x);

async function startServer(name, seeds, mode, rec) {
  const rootNodes = seeds.map((s) => ({ url: `redis://${s}` }));
  const pub = createCluster({ rootNodes, defaults: { name: `${name}-pub` } });
  const sub = createCluster({ rootNodes, defaults: { name: `${name}-sub` } });
  for (const c of [pub, sub]) c.on("error", (e) => rec.event(`${name} redis error ${e}`));
  await Promise.all([pub.connect(), sub.connect()]);
  const io = new Server({ adapter: createShardedAdapter(pub, sub, { subscriptionMode: mode }) });
  io.on("connection", (s) => {
    for (const r of s.handshake.auth.rooms || []) s.join(r);
  });
  io.on("hello", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    rec.event(`server ${name} got serverSideEmit "hello" ${JSON.stringify(args)}${ack ? " with ack" : ""}`);
    if (ack) ack(`pong-${name}`);
  });
  const server = http.createServer();
  io.attach(server);
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { name, io, pub, sub, server, port: server.address().port };
}

function connectClient(name, port, rooms, rec) {
  return new Promise((resolve, reject) => {
    const c = ioc(`http://127.0.0.1:${port}`, { transports: ["websocket"], auth: { rooms }, reconnection: false });
    c.onAny((ev, ...args) => {
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      if (ack) ack(`ack-${name}`);
      rec.event(`client ${name} got "${ev}" ${JSON.stringify(args.map(enc))}${ack ? " (acked)" : ""}`);
    });
    c.on("disconnect", (reason) => rec.event(`client ${name} disconnected: ${reason}`));
    c.on("connect", () => resolve(c));
    c.on("connect_error", reject);
  });
}

// A running recorder of the cluster that `seeds` reach, the lines it writes, and its sections.
async function startRecording(seeds) {
  const prims = await primaries(seeds[0]);
  const rec = new Recorder(prims);
  await rec.start();
  const out = [];
  return { prims, rec, out, section: sectionWriter(rec, out) };
}

// Servers A, B and C in `mode` into `servers`, their uids replaced by placeholders.
async function startServers(seeds, mode, rec, servers) {
  for (const n of ["A", "B", "C"]) servers[n] = await startServer(n, seeds, mode, rec);
  for (const s of Object.values(servers)) rec.substitutions.push([s.io.of("/").adapter.uid, `<uid:${s.name}>`]);
}

// The end of a capture's header: the placeholders and the slot of every channel seen.
function headerTail(rec, out, prims) {
  return [
    "# Placeholders (random per run):",
    ...rec.substitutions.map(([real, ph]) => `#   ${ph} = ${real}`),
    "# Channel slots:",
    ...channelTable(out, prims),
  ];
}

async function captureMode(seeds, mode) {
  const { prims, rec, out, section } = await startRecording(seeds);

  const servers = {};
  const clients = {};
  await section("startup", "three servers A, B, C start; each SSUBSCRIBEs the main and its own response channel", async () => {
    await startServers(seeds, mode, rec, servers);
  });
  await section("connect", "clients a1 on A (rooms room1), b1 on B (room1, room2), c1 on C (none) connect and join at connection", async () => {
    clients.a1 = await connectClient("a1", servers.A.port, ["room1"], rec);
    clients.b1 = await connectClient("b1", servers.B.port, ["room1", "room2"], rec);
    clients.c1 = await connectClient("c1", servers.C.port, [], rec);
    for (const [n, c] of Object.entries(clients)) rec.substitutions.push([c.id, `<sid:${n}>`]);
  });
  const A = servers.A.io;
  await section("broadcast-all", 'A: io.emit("all", 1, "two")', () => A.emit("all", 1, "two") && undefined);
  await section("broadcast-room", 'A: io.to("room1").emit("to-room1", "x")', () => A.to("room1").emit("to-room1", "x") && undefined);
  await section("broadcast-two-rooms", 'A: io.to(["room1", "room2"]).emit("to-two-rooms")', () => A.to(["room1", "room2"]).emit("to-two-rooms") && undefined);
  await section("broadcast-except", 'A: io.except("room2").emit("except-room2")', () => A.except("room2").emit("except-room2") && undefined);
  await section("broadcast-room-except", 'A: io.to("room1").except("room2").emit("room1-except-room2")', () => A.to("room1").except("room2").emit("room1-except-room2") && undefined);
  await section("broadcast-to-socket", 'A: io.to(<sid:c1>).emit("direct") (a socket-id room on another server)', () => A.to(clients.c1.id).emit("direct") && undefined);
  await section("broadcast-binary", 'A: io.emit("bin", Buffer.from([1, 2, 3]))', () => A.emit("bin", Buffer.from([1, 2, 3])) && undefined);
  await section("broadcast-binary-room", 'A: io.to("room2").emit("bin-room", Buffer.from([4, 5]), {n: 1})', () => A.to("room2").emit("bin-room", Buffer.from([4, 5]), { n: 1 }) && undefined);
  await section("broadcast-volatile", 'A: io.volatile.emit("volatile")', () => A.volatile.emit("volatile") && undefined);
  await section("broadcast-compress-false", 'A: io.compress(false).emit("uncompressed")', () => A.compress(false).emit("uncompressed") && undefined);
  await section("broadcast-local", 'A: io.local.emit("local-only") (nothing published)', () => A.local.emit("local-only") && undefined);
  await section("broadcast-with-ack", 'A: io.timeout(2000).emitWithAck("ask", 7); clients answer ack-<name>', async () => (await A.timeout(2000).emitWithAck("ask", 7)).sort());
  await section("broadcast-room-with-ack", 'A: io.to("room2").timeout(2000).emitWithAck("ask-room2")', async () => (await A.to("room2").timeout(2000).emitWithAck("ask-room2")).sort());
  await section("server-count", "A: io.of('/').adapter.serverCount()", () => A.of("/").adapter.serverCount());
  await section("fetch-sockets", "A: io.fetchSockets() (ids and rooms of the result)", async () => (await A.fetchSockets()).map((s) => `${rec.sub(s.id)} ${[...s.rooms].map((r) => rec.sub(r)).sort().join(",")}`).sort());
  await section("fetch-sockets-room", 'A: io.in("room2").fetchSockets()', async () => (await A.in("room2").fetchSockets()).map((s) => s.id));
  await section("server-side-emit", 'A: io.serverSideEmit("hello", 1, "x")', () => A.serverSideEmit("hello", 1, "x") && undefined);
  await section("server-side-emit-ack", 'A: io.serverSideEmitWithAck("hello", "ack me"); B and C answer pong-<name>', async () => (await A.serverSideEmitWithAck("hello", "ack me")).sort());
  await section("sockets-join", 'A: io.in(<sid:c1>).socketsJoin("room3")', () => A.in(clients.c1.id).socketsJoin("room3"));
  await section("broadcast-room3", 'A: io.to("room3").emit("to-room3") after the join settled', () => A.to("room3").emit("to-room3") && undefined);
  await section("sockets-leave", 'A: io.in(<sid:c1>).socketsLeave("room3")', () => A.in(clients.c1.id).socketsLeave("room3"));
  await section("socket-join-local", 'C: the socket c1 joins "room4" on its own server (socket.join)', () => servers.C.io.sockets.sockets.get(clients.c1.id).join("room4"));
  await section("socket-leave-local", 'C: the socket c1 leaves "room4" (socket.leave)', () => servers.C.io.sockets.sockets.get(clients.c1.id).leave("room4"));
  await section("all-rooms", "A: typeof io.of('/').adapter.allRooms (the sharded adapter has no cluster-wide room listing)", () => typeof A.of("/").adapter.allRooms);

  // The ordering hazard: a join published on the main channel, a broadcast on the room's own
  // channel right after it. Count how many reach the socket joined.
  const trials = 20;
  let received = 0;
  const got = new Set();
  clients.c1.on("hazard", (n) => got.add(n));
  await section("ordering-hazard", `A, ${trials} times: io.in(<sid:c1>).socketsJoin("hz-<n>"); io.to("hz-<n>").emit("hazard", n) with no wait in between`, async () => {
    for (let n = 0; n < trials; n++) {
      A.in(clients.c1.id).socketsJoin(`hz-${n}`);
      A.to(`hz-${n}`).emit("hazard", n);
      await sleep(50);
    }
    await sleep(SETTLE_MS);
    received = got.size;
    return `c1 received ${received} of ${trials} broadcasts`;
  });

  await section("disconnect-sockets", 'A: io.in("room2").disconnectSockets(true) (b1 is in room2)', () => A.in("room2").disconnectSockets(true));
  const main = "socket.io#/#";
  await section("slot-migration", "the main channel's slot moves to another primary and back, with a broadcast from A after each move. Redis drops every sharded subscription to the slot's channels with a SUNSUBSCRIBE push (not in MONITOR); SHARDNUMSUB on the new owner shows whether the servers subscribed again", async () => {
    const slot = keySlot(main);
    const home = (await primaries(seeds[0])).find((p) => owns(p, slot));
    const away = (await primaries(seeds[0])).find((p) => !owns(p, slot));
    const moves = [];
    // A plain subscriber of our own shows what Redis sends subscribers when the slot leaves.
    const probe = await Resp.connect(home.port);
    await probe.cmd("SSUBSCRIBE", main);
    probe.onPush = (push) => rec.event(`a raw SSUBSCRIBE connection on ${home.label} got the push ${JSON.stringify(push)}`);
    for (const [to, n] of [[away, 1], [home, 2]]) {
      await migrateSlot(seeds[0], slot, to);
      let subscribers = 0;
      await waitFor("the three servers back on the main channel", async () => (subscribers = await shardNumSub(to.port, main)) === 3, 5000).catch(() => {});
      A.emit("after-move", n);
      moves.push(`slot ${slot} now on ${to.label}, SHARDNUMSUB there ${subscribers}`);
    }
    probe.close();
    return moves;
  });
  await section("close", "every client disconnects, every server closes (adapter close)", async () => {
    for (const c of Object.values(clients)) c.disconnect();
    await sleep(200);
    for (const s of Object.values(servers)) {
      await new Promise((r) => s.io.close(() => r()));
    }
    // The adapters' SUNSUBSCRIBEs are not awaited by close(): let them finish before QUIT.
    await sleep(SETTLE_MS);
    for (const s of Object.values(servers)) {
      await Promise.all([s.pub.quit(), s.sub.quit()]);
    }
  });
  rec.stop();

  const header = [
    `# Node sharded adapter traffic, subscriptionMode "${mode}"`,
    "# Generated by adapter-redis/tests/node/capture-sharded.js (see README.md next to this file).",
    "# @socket.io/redis-adapter 8.3.0, socket.io 4.8.4, redis (node-redis) 4.7.1 cluster clients, Redis " + redisVersion(seeds[0]) + ".",
    "#",
    "# Line format: <primary> <connection> <command as MONITOR prints it>; `=> ` lines are what the",
    "# servers, clients and calls observed. <connection> is <server>-pub (publishes, PUBSUB) or",
    "# <server>-sub (sharded subscriptions: one connection per primary it needs).",
    "#",
    "# Primaries:",
    ...prims.map((p) => `#   ${p.label} slots ${p.ranges.join(" ")}`),
    ...headerTail(rec, out, prims),
  ];
  return { text: [...header, ...out, ""].join("\n"), received, trials };
}

function channelTable(lines, prims) {
  const channels = new Set();
  for (const l of lines) {
    const m = /"(?:SSUBSCRIBE|SUNSUBSCRIBE|SPUBLISH|PUBSUB)" (?:"SHARDNUMSUB" )?"([^"]+)"/i.exec(l);
    if (m) channels.add(m[1]);
  }
  return [...channels].sort().map((c) => {
    // Placeholders stand for fixed-length random ids; the slot is of the real channel, so we
    // only compute it for channels without one.
    if (c.includes("<")) return `#   ${c}  (slot depends on the random id)`;
    const slot = keySlot(c);
    const owner = prims.find((p) => owns(p, slot));
    return `#   ${c}  slot ${slot} on ${owner ? owner.label : "?"}`;
  });
}

function redisVersion(seed) {
  try {
    return execFileSync("redis-cli", ["-h", seed.split(":")[0], "-p", seed.split(":")[1], "INFO", "server"]).toString().match(/redis_version:(\S+)/)[1];
  } catch {
    return "(unknown)";
  }
}

// What Node's sharded adapter does when the primary owning the main channel dies and its
// replica is promoted (dynamic mode).
async function captureFailover(seeds) {
  const { prims, rec, out, section } = await startRecording(seeds);
  const servers = {};
  const clients = {};
  await section("startup", "servers A, B, C (dynamic mode) and clients a1 (room1 on A), b1 (room1, room2 on B), c1 (on C)", async () => {
    await startServers(seeds, "dynamic", rec, servers);
    clients.a1 = await connectClient("a1", servers.A.port, ["room1"], rec);
    clients.b1 = await connectClient("b1", servers.B.port, ["room1", "room2"], rec);
    clients.c1 = await connectClient("c1", servers.C.port, [], rec);
    for (const [n, c] of Object.entries(clients)) rec.substitutions.push([c.id, `<sid:${n}>`]);
  });
  const A = servers.A.io;
  const main = "socket.io#/#";
  const slot = keySlot(main);
  const victim = prims.find((p) => owns(p, slot));
  await section("before", 'A: io.emit("before")', () => A.emit("before") && undefined);
  let promoted;
  await section("failover", `SIGKILL of ${victim.label}, the main channel's primary; wait until its replica owns slot ${slot} and reports cluster_state:ok`, async () => {
    const started = Date.now();
    process.kill(serverByPort.get(victim.port).pid, "SIGKILL");
    const survivor = prims.find((p) => p.id !== victim.id);
    await waitFor("a promoted replica", async () => {
      const now = await primaries(`127.0.0.1:${survivor.port}`);
      promoted = now.find((p) => owns(p, slot) && p.id !== victim.id);
      if (!promoted) return false;
      const c = await Resp.connect(promoted.port);
      const info = await c.cmd("CLUSTER", "INFO");
      c.close();
      return info.includes("cluster_state:ok");
    }, 30000);
    promoted.label = `${victim.label}'`;
    await rec.watch(promoted);
    return `${victim.label}' (the replica) owns slot ${slot} after ${Math.round((Date.now() - started) / 100) / 10} s`;
  });
  await section("resubscribe", `SHARDNUMSUB of the main channel on ${victim.label}' for up to 10 s`, async () => {
    let n = 0;
    const started = Date.now();
    await waitFor("three subscribers", async () => (n = await shardNumSub(promoted.port, main)) === 3, 10000).catch(() => {});
    return `${n} subscribers after ${Math.round((Date.now() - started) / 100) / 10} s`;
  });
  await section("after", 'A: io.emit("after")', () => A.emit("after") && undefined);
  await section("after-room", 'A: io.to("room1").emit("after-room1") (room1\'s channel is on a primary that did not fail, unless it shared the slot range)', () => A.to("room1").emit("after-room1") && undefined);
  await section("server-count", "A: adapter.serverCount() after the failover", () => A.of("/").adapter.serverCount());
  await section("close", "clients disconnect, servers close", async () => {
    for (const c of Object.values(clients)) c.disconnect();
    for (const s of Object.values(servers)) await new Promise((r) => s.io.close(() => r()));
    await sleep(SETTLE_MS);
    for (const s of Object.values(servers)) await Promise.all([s.pub.quit(), s.sub.quit()]).catch(() => {});
  });
  rec.stop();
  const header = [
    '# Node sharded adapter across a primary failover, subscriptionMode "dynamic"',
    "# Generated by adapter-redis/tests/node/capture-sharded.js (see README.md next to this file).",
    "# Three primaries with one replica each (cluster-node-timeout 1000 ms). Same line format as",
    "# dynamic.txt; the promoted replica is watched from the failover on and shown as <label>'.",
    "#",
    "# Primaries before the failover:",
    ...prims.map((p) => `#   ${p.label} slots ${p.ranges.join(" ")}`),
    ...headerTail(rec, out, prims),
  ];
  return [...header, ...out, ""].join("\n");
}

async function main() {
  const [outDir, nodes] = process.argv.slice(2);
  if (!outDir) {
    console.error("usage: node capture-sharded.js <out-dir> [host:port,...]");
    process.exit(2);
  }
  fs.mkdirSync(outDir, { recursive: true });
  const seeds = nodes ? nodes.split(",") : await startCluster();
  for (const mode of ["static", "dynamic", "dynamic-private"]) {
    const { text, received, trials } = await captureMode(seeds, mode);
    fs.writeFileSync(path.join(outDir, `${mode}.txt`), text);
    console.log(`${mode}: written; ordering hazard: ${received}/${trials} delivered`);
  }
  if (nodes) {
    console.log("failover.txt needs a cluster of our own (it kills a primary): skipped");
  } else {
    fs.writeFileSync(path.join(outDir, "failover.txt"), await captureFailover(seeds));
    console.log("failover: written");
  }
  process.exit(0);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
