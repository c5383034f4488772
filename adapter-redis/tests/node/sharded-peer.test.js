// Checks sharded-peer.js itself, two instances on a real three-primary Redis Cluster, before Rust
// tests rely on it:  node --test sharded-peer.test.js   (needs redis-server and redis-tools).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("path");
const readline = require("readline");
const { spawn } = require("child_process");
const { startCluster, stopClusters } = require("./redis-cluster");

const WAIT_MS = 8000;

class Peer {
  static start(mode, seeds, otherPort) {
    const child = spawn(process.execPath, [path.join(__dirname, "sharded-peer.js"), mode, seeds.join(","), String(otherPort)], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const peer = new Peer(child);
    return new Promise((resolve, reject) => {
      peer.onReady = (msg) => {
        peer.port = msg.port;
        peer.sids = msg.sids;
        resolve(peer);
      };
      peer.onFatal = reject;
    });
  }
  constructor(child) {
    this.child = child;
    this.nextId = 1;
    this.pending = new Map();
    this.events = [];
    this.waiters = [];
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      const msg = JSON.parse(line);
      if (msg.type === "ready") this.onReady(msg);
      else if (msg.type === "fatal") this.onFatal(new Error(msg.error));
      else if (msg.type === "result") {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (p) "error" in msg ? p.reject(new Error(msg.error)) : p.resolve(msg.value);
      } else if (msg.type === "event" || msg.type === "disconnect") {
        this.events.push(msg);
        for (const w of this.waiters.splice(0)) w();
      }
    });
  }
  cmd(cmd, args = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin.write(JSON.stringify({ id, cmd, ...args }) + "\n");
    });
  }
  // Waits until `count` events named `name` reached `client`, for at most `waitMs`; returns
  // what arrived.
  async received(client, name, count = 1, waitMs = WAIT_MS) {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const got = this.events.filter((e) => e.client === client && e.name === name);
      if (got.length >= count) return got;
      if (Date.now() > deadline) return got;
      await new Promise((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }
  kill() {
    this.child.kill("SIGKILL");
  }
}

test("sharded-peer.js", async (t) => {
  t.after(stopClusters);
  const seeds = await startCluster({ replicas: 0 });
  for (const mode of ["static", "dynamic"]) {
    await t.test(`two peers, ${mode} mode`, async () => {
      const b = await Peer.start(mode, seeds, 0);
      const a = await Peer.start(mode, seeds, b.port);
      try {
        assert.equal(await a.cmd("server_count"), 2);
        // A holds cn; B holds its own cn and A's cr and cr2.
        assert.deepEqual(await a.cmd("fetch"), [a.sids.cn, a.sids.cr, a.sids.cr2, b.sids.cn].sort());

        await a.cmd("emit_room", { room: "r1" });
        assert.equal((await a.received("cr", "from-node-room")).length, 1);
        assert.equal((await a.received("cn", "from-node-room")).length, 1);
        await a.cmd("emit_all");
        assert.equal((await a.received("cr2", "from-node-all")).length, 1);
        assert.equal((await a.received("cr2", "from-node-room", 1, 500)).length, 0, "cr2 is not in r1");

        await a.cmd("emit_to_socket", { sid: a.sids.cr2 });
        assert.deepEqual((await a.received("cr2", "direct-from-node"))[0].args, ["hi"]);
        assert.deepEqual(await a.cmd("sse_ack"), ["pong-node"]);
        assert.equal((await a.cmd("emit_with_ack")).length, 4);

        if (mode === "static") {
          // One channel, one publisher connection: a join is always applied before the
          // broadcast that follows it.
          for (let n = 0; n < 20; n++) await a.cmd("join_then_emit", { room: `hz-${n}`, target: a.sids.cr, n });
          assert.equal((await a.received("cr", "after-join", 20)).length, 20);
        }
      } finally {
        a.kill();
        b.kill();
      }
    });
  }
});
