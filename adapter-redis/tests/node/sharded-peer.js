// A Node.js socket.io 4.8 server on @socket.io/redis-adapter 8.3's sharded adapter
// (`createShardedAdapter`, node-redis 4 cluster clients), with socket.io-client sockets on it
// and, when given a port, on another server (the Rust gateway) in the same Redis Cluster.
// Driven line by line from stdin like peer.js; every line on stdout is one JSON object.
//
//   node sharded-peer.js <static|dynamic|dynamic-private> <host:port,...> <other server port or 0>
//
// Its clients: "cn" on this server in room r1; with another server, "cr" there in r1 and "cr2"
// in r2. Commands (`{"id": n, "cmd": ..., ...}`) answer `{"type":"result","id":n,"value"|"error"}`.
"use strict";
const http = require("http");
const readline = require("readline");
const { Server } = require("socket.io");
const { io: ioc } = require("socket.io-client");
const { createShardedAdapter } = require("@socket.io/redis-adapter");
const { createCluster } = require("redis");

const MODES = ["static", "dynamic", "dynamic-private"];
const [mode, nodes, otherPortArg] = process.argv.slice(2);
const otherPort = Number(otherPortArg || 0);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const enc = (x) =>
  Buffer.isBuffer(x) || x instanceof ArrayBuffer ? { bin: [...Buffer.from(x)] } : x;

async function main() {
  if (!MODES.includes(mode) || !nodes) {
    throw new Error("usage: node sharded-peer.js <static|dynamic|dynamic-private> <host:port,...> <port or 0>");
  }
  const rootNodes = nodes.split(",").map((n) => ({ url: `redis://${n}` }));
  const pub = createCluster({ rootNodes });
  const sub = createCluster({ rootNodes });
  for (const c of [pub, sub]) c.on("error", (e) => out({ type: "log", error: String(e) }));
  await Promise.all([pub.connect(), sub.connect()]);
  const io = new Server({ adapter: createShardedAdapter(pub, sub, { subscriptionMode: mode }) });
  io.on("connection", (s) => {
    for (const r of s.handshake.auth.rooms || []) s.join(r);
    s.data = { user: "node-user" };
  });
  io.on("ping-srv", (...args) => {
    const cb = args[args.length - 1];
    if (typeof cb === "function") cb("pong-node");
  });
  const server = http.createServer();
  io.attach(server);
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const nodePort = server.address().port;

  const clients = {};
  const connect = (name, port, rooms) =>
    new Promise((resolve, reject) => {
      const c = ioc(`http://127.0.0.1:${port}`, {
        transports: ["websocket"],
        auth: { rooms },
        reconnection: false,
      });
      c.onAny((ev, ...args) => {
        if (typeof args[args.length - 1] === "function") args.pop()(`ack-${ev}-${name}`);
        out({ type: "event", client: name, name: ev, args: args.map(enc) });
      });
      c.on("disconnect", (reason) => out({ type: "disconnect", client: name, reason }));
      c.on("connect", () => resolve(c));
      c.on("connect_error", reject);
      clients[name] = c;
    });
  await connect("cn", nodePort, ["r1"]);
  if (otherPort) {
    await connect("cr", otherPort, ["r1"]);
    await connect("cr2", otherPort, ["r2"]);
  }

  const commands = {
    emit_all: () => io.emit("from-node-all", 1, "two"),
    emit_room: ({ room = "r1" }) => io.to(room).emit("from-node-room", "x"),
    emit_except: () => io.except("r2").emit("from-node-except"),
    emit_bin: () => io.emit("from-node-bin", Buffer.from([1, 2, 3])),
    emit_volatile: () => io.volatile.emit("from-node-volatile", 1.5),
    emit_to_socket: ({ sid }) => io.to(sid).emit("direct-from-node", "hi"),
    emit_end: () => io.emit("end"),
    join: ({ room, rooms }) => io.in(room).socketsJoin(rooms),
    leave: ({ room, rooms }) => io.in(room).socketsLeave(rooms),
    // The ordering hazard: a join and, with no wait, a broadcast to the room joined.
    join_then_emit: ({ room, target, n }) => {
      io.in(target).socketsJoin(room);
      io.to(room).emit("after-join", n);
    },
    disconnect: ({ room }) => io.in(room).disconnectSockets(),
    local_room_size: ({ room }) => io.of("/").adapter.rooms.get(room)?.size ?? 0,
    fetch: async () => (await io.fetchSockets()).map((s) => s.id).sort(),
    fetch_room: async ({ room }) => (await io.in(room).fetchSockets()).map((s) => s.id).sort(),
    server_count: async () => io.of("/").adapter.serverCount(),
    emit_with_ack: async () => (await io.timeout(3000).emitWithAck("node-ask", 1)).sort(),
    sse: () => io.serverSideEmit("from-node-sse", 7),
    sse_ack: async () => io.serverSideEmitWithAck("ping-srv", "hi"),
    close: async () => {
      for (const c of Object.values(clients)) c.disconnect();
      await new Promise((r) => io.close(() => r()));
      return true;
    },
  };

  out({
    type: "ready",
    port: nodePort,
    uid: io.of("/").adapter.uid,
    sids: Object.fromEntries(Object.entries(clients).map(([k, c]) => [k, c.id])),
  });
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", async (line) => {
    let msg;
    try {
      msg = JSON.parse(line);
      const run = commands[msg.cmd];
      if (!run) throw new Error(`unknown command ${msg.cmd}`);
      const value = await run(msg);
      out({ type: "result", id: msg.id, value: value === undefined ? null : value });
    } catch (e) {
      out({ type: "result", id: msg && msg.id, error: String(e && e.message ? e.message : e) });
    }
  });
  rl.on("close", () => process.exit(0));
}

main().catch((e) => {
  out({ type: "fatal", error: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
