// What peer.js and sharded-peer.js share: the line protocol's output, a socket.io 4.8 server
// on the given adapter, and socket.io-client sockets that report every event they receive.
"use strict";
const http = require("http");
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

module.exports = { out, enc, startServer, connectClient };
