// What peer.js and sharded-peer.js share: the line protocol, a socket.io 4.8 server on the
// given adapter, socket.io-client sockets that report every event they receive, and the
// commands both answer alike.
"use strict";
const http = require("http");
const readline = require("readline");
const { Server } = require("socket.io");
const { io: ioc } = require("socket.io-client");

// One JSON object per stdout line.
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
// Binary payloads as `{ bin: [bytes] }`, so the Rust side can compare them.
const enc = (x) =>
  Buffer.isBuffer(x) || x instanceof ArrayBuffer ? { bin: [...Buffer.from(x)] } : x;

// A server on `adapter` listening on a free loopback port: its sockets join the rooms their
// handshake names, and `ping-srv` (serverSideEmit) answers "pong-node".
async function startServer(adapter) {
  const io = new Server({ adapter });
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
  return { io, port: server.address().port };
}

// Connects client `name` to the server on `port`, in `rooms`, into `clients`: every event it
// receives is printed (and acked with `ack-<event>-<name>`), and so is its disconnect.
function connectClient(clients, name, port, rooms) {
  return new Promise((resolve, reject) => {
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
}

// The commands both peers answer alike, on their server `io`.
function sharedCommands(io) {
  return {
    emit_all: () => io.emit("from-node-all", 1, "two"),
    emit_room: ({ room = "r1" }) => io.to(room).emit("from-node-room", "x"),
    emit_except: () => io.except("r2").emit("from-node-except"),
    emit_bin: () => io.emit("from-node-bin", Buffer.from([1, 2, 3])),
    emit_volatile: () => io.volatile.emit("from-node-volatile", 1.5),
    emit_end: () => io.emit("end"),
    join: ({ room, rooms }) => io.in(room).socketsJoin(rooms),
    leave: ({ room, rooms }) => io.in(room).socketsLeave(rooms),
    // The ordering hazard (and the mixed-cluster case): a join and, with no wait, a
    // broadcast to the room joined.
    join_then_emit: ({ room, target, n }) => {
      io.in(target).socketsJoin(room);
      io.to(room).emit("after-join", n);
    },
    disconnect: ({ room }) => io.in(room).disconnectSockets(),
    local_room_size: ({ room }) => io.of("/").adapter.rooms.get(room)?.size ?? 0,
    fetch: async () => (await io.fetchSockets()).map((s) => s.id).sort(),
    server_count: async () => io.of("/").adapter.serverCount(),
    emit_with_ack: async () => (await io.timeout(3000).emitWithAck("node-ask", 1)).sort(),
    sse_ack: async () => io.serverSideEmitWithAck("ping-srv", "hi"),
  };
}

// Prints `ready` (with `port`, the clients' ids and `extra`), then answers each command line
// of stdin (`{"id": n, "cmd": ..., ...}`) with `{"type":"result","id":n,"value"|"error"}`
// until stdin closes.
function serve(commands, port, clients, extra = {}) {
  out({
    type: "ready",
    port,
    ...extra,
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

// Runs a peer's `main`, reporting a failure as a `fatal` line.
function runPeer(main) {
  main().catch((e) => {
    out({ type: "fatal", error: String(e && e.stack ? e.stack : e) });
    process.exit(1);
  });
}

module.exports = { out, enc, startServer, connectClient, sharedCommands, serve, runPeer };
