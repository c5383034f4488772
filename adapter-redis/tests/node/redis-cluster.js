// A real Redis Cluster for the Node.js tools in this directory: redis-server processes on free
// ports in a temp dir (killed by PID when this process exits), formed with
// `redis-cli --cluster create`, plus a small RESP client of our own for MONITOR and cluster
// administration. Needs Debian's redis-server and redis-tools.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const net = require("net");
const { spawn, execFileSync } = require("child_process");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- a tiny RESP client of our own, for MONITOR and cluster set-up ----

function respEncode(args) {
  let s = `*${args.length}\r\n`;
  for (const a of args) s += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`;
  return s;
}

// Parses one RESP reply from `buf` at `i`; returns [value, nextIndex] or null if incomplete.
function respParse(buf, i = 0) {
  const eol = buf.indexOf("\r\n", i);
  if (eol < 0) return null;
  const kind = String.fromCharCode(buf[i]);
  const line = buf.toString("utf8", i + 1, eol);
  const next = eol + 2;
  if (kind === "+" || kind === ":") return [kind === ":" ? Number(line) : line, next];
  if (kind === "-") return [new Error(line), next];
  if (kind === "$") {
    const len = Number(line);
    if (len < 0) return [null, next];
    if (buf.length < next + len + 2) return null;
    return [buf.toString("utf8", next, next + len), next + len + 2];
  }
  if (kind === "*") {
    const len = Number(line);
    const items = [];
    let at = next;
    for (let k = 0; k < len; k++) {
      const r = respParse(buf, at);
      if (!r) return null;
      items.push(r[0]);
      at = r[1];
    }
    return [items, at];
  }
  throw new Error(`bad RESP type ${kind}`);
}

class Resp {
  // Every helper connection is named "capture" so the recorder can leave its commands out.
  static connect(port) {
    return new Promise((resolve, reject) => {
      const sock = net.connect(port, "127.0.0.1", () => {
        const c = new Resp(sock);
        c.cmd("CLIENT", "SETNAME", "capture").then(() => resolve(c), reject);
      });
      sock.once("error", reject);
    });
  }
  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.waiting = [];
    this.onPush = null;
    sock.on("data", (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        const r = respParse(this.buf);
        if (!r) break;
        this.buf = this.buf.subarray(r[1]);
        const w = this.waiting.shift();
        if (w) r[0] instanceof Error ? w.reject(r[0]) : w.resolve(r[0]);
        else if (this.onPush) this.onPush(r[0]);
      }
    });
    sock.on("error", () => {});
  }
  cmd(...args) {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.sock.write(respEncode(args));
    });
  }
  close() {
    this.sock.destroy();
  }
}

// ---- the cluster ----

const handedOut = new Set();
// A port the OS reports free, never one handed out before in this run (the OS may offer a
// port again once its listener is closed, and two servers must not race for it).
async function freePort() {
  for (;;) {
    const port = await osFreePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}
const osFreePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const children = [];
// Kills every redis-server this process started. A test runner calls it when done: the live
// children would otherwise keep the process (and `node --test`) from ever exiting.
function stopClusters() {
  for (const c of children.splice(0)) {
    try {
      process.kill(c.pid, "SIGKILL");
    } catch {}
  }
}
process.on("exit", stopClusters);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(1));

async function waitFor(what, fn, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// port -> redis-server child process, for the failover capture.
const serverByPort = new Map();

// Three primaries with `replicas` replicas each (default 1). A dead primary is noticed after one
// second and any replica may take over, so a failover takes seconds.
async function startCluster({ replicas = 1 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "capture-sharded-"));
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  const ports = [];
  const total = 3 * (1 + replicas);
  for (let k = 0; k < total; k++) {
    const port = await freePort();
    const busPort = await freePort();
    ports.push(port);
    const args = ["--port", port, "--cluster-port", busPort, "--bind", "127.0.0.1"];
    args.push("--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`);
    args.push("--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0");
    args.push("--save", "", "--appendonly", "no", "--protected-mode", "no");
    const child = spawn("redis-server", args.map(String), { cwd: dir, stdio: "ignore" });
    child.on("error", (e) => {
      console.error(`cannot start redis-server (apt-get install redis-server): ${e.message}`);
      process.exit(1);
    });
    children.push(child);
    serverByPort.set(port, child);
  }
  for (const port of ports) await waitFor(`redis-server on ${port}`, async () => (await Resp.connect(port)).close() || true);
  execFileSync("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", String(replicas), "--cluster-yes"], { stdio: "ignore" });
  for (const port of ports) {
    await waitFor(`cluster_state:ok on ${port}`, async () => {
      const c = await Resp.connect(port);
      const info = await c.cmd("CLUSTER", "INFO");
      const repl = await c.cmd("INFO", "replication");
      c.close();
      const synced = !repl.includes("role:slave") || repl.includes("master_link_status:up");
      return info.includes("cluster_state:ok") && info.includes(`cluster_known_nodes:${total}`) && synced;
    });
  }
  return ports.map((p) => `127.0.0.1:${p}`);
}

// The primaries in slot order, labelled P1, P2, ...
async function primaries(seed) {
  const c = await Resp.connect(Number(seed.split(":")[1]));
  const text = await c.cmd("CLUSTER", "NODES");
  c.close();
  return text
    .trim()
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => f[2].includes("master") && !f[2].includes("fail") && f.length > 8)
    .map((f) => ({ id: f[0], port: Number(f[1].split(/[:@]/)[1]), ranges: f.slice(8).filter((s) => !s.startsWith("[")) }))
    .sort((a, b) => Number(a.ranges[0].split("-")[0]) - Number(b.ranges[0].split("-")[0]))
    .map((p, k) => ({ ...p, label: `P${k + 1}` }));
}

const owns = (p, slot) =>
  p.ranges.some((r) => {
    const [lo, hi = lo] = r.split("-").map(Number);
    return slot >= lo && slot <= hi;
  });

// Moves a slot (it holds no keys here: channels are not keys) to the primary `to`, the way
// `redis-cli --cluster reshard` does, and waits until every primary agrees.
async function migrateSlot(seed, slot, to) {
  const from = (await primaries(seed)).find((p) => owns(p, slot));
  if (from.id === to.id) return;
  const src = await Resp.connect(from.port);
  const dst = await Resp.connect(to.port);
  await dst.cmd("CLUSTER", "SETSLOT", slot, "IMPORTING", from.id);
  await src.cmd("CLUSTER", "SETSLOT", slot, "MIGRATING", to.id);
  await dst.cmd("CLUSTER", "SETSLOT", slot, "NODE", to.id);
  await src.cmd("CLUSTER", "SETSLOT", slot, "NODE", to.id);
  src.close();
  dst.close();
  const all = await primaries(seed);
  for (const p of all) {
    if (p.id === from.id || p.id === to.id) continue;
    const c = await Resp.connect(p.port);
    await c.cmd("CLUSTER", "SETSLOT", slot, "NODE", to.id);
    c.close();
  }
  for (const p of all) {
    await waitFor(`slot ${slot} on ${to.label} as seen by ${p.label}`, async () => (await primaries(`127.0.0.1:${p.port}`)).find((q) => owns(q, slot))?.id === to.id);
  }
}

async function shardNumSub(port, channel) {
  const c = await Resp.connect(port);
  const [, n] = await c.cmd("PUBSUB", "SHARDNUMSUB", channel);
  c.close();
  return n;
}

module.exports = { stopClusters, Resp, freePort, waitFor, sleep, startCluster, serverByPort, primaries, owns, migrateSlot, shardNumSub };
