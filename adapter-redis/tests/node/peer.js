// A Node.js socket.io 4.8 server on @socket.io/redis-adapter 8.3 (node-redis 4), plus
// socket.io-client sockets on it and on the Rust server, driven line by line from stdin by
// adapter-redis/tests/node_interop.rs. Every line on stdout is one JSON object.
"use strict";
const readline = require("readline");
const { createAdapter } = require("@socket.io/redis-adapter");
const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");

const [redisPort, rustPort] = process.argv.slice(2).map(Number);
const { out, startServer, connectClient } = require("./peer-server");

async function main() {
  const pub = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  const sub = pub.duplicate();
  const emitterClient = pub.duplicate();
  for (const c of [pub, sub, emitterClient]) c.on("error", (e) => out({ type: "log", error: String(e) }));
  await Promise.all([pub.connect(), sub.connect(), emitterClient.connect()]);
  const { io, port: nodePort } = await startServer(createAdapter(pub, sub, { requestsTimeout: 3000 }));

  const clients = {};
  const connect = (name, port, rooms) => connectClient(clients, name, port, rooms);
  await connect("cn", nodePort, ["r1"]);
  await connect("cr", rustPort, ["r1"]);
  await connect("cr2", rustPort, ["r2"]);
  const emitter = new Emitter(emitterClient);

  const commands = {
    emit_all: () => io.emit("from-node-all", 1, "two"),
    emit_room: () => io.to("r1").emit("from-node-room", "x"),
    emit_except: () => io.except("r2").emit("from-node-except"),
    emit_bin: () => io.emit("from-node-bin", Buffer.from([1, 2, 3])),
    emit_volatile: () => io.volatile.emit("from-node-volatile", 1.5),
    emit_end: () => io.emit("end"),
    join: ({ room, rooms }) => io.in(room).socketsJoin(rooms),
    leave: ({ room, rooms }) => io.in(room).socketsLeave(rooms),
    // A join and, with no wait, a broadcast to the room joined (the mixed-cluster ordering case).
    join_then_emit: ({ room, target, n }) => {
      io.in(target).socketsJoin(room);
      io.to(room).emit("after-join", n);
    },
    disconnect: ({ room }) => io.in(room).disconnectSockets(),
    local_room_size: ({ room }) => io.of("/").adapter.rooms.get(room)?.size ?? 0,
    fetch: async () => (await io.fetchSockets()).map((s) => s.id).sort(),
    remote_emit: async ({ sid }) => {
      const s = (await io.fetchSockets()).find((x) => x.id === sid);
      if (!s) throw new Error(`no socket ${sid}`);
      s.emit("direct-from-node", "hi");
      return true;
    },
    all_rooms: async () => [...(await io.of("/").adapter.allRooms())].sort(),
    server_count: async () => io.of("/").adapter.serverCount(),
    emit_with_ack: async () => (await io.timeout(3000).emitWithAck("node-ask", 1)).sort(),
    sse_ack: async () => io.serverSideEmitWithAck("ping-srv", "hi"),
    emitter_room: () => emitter.to("r1").emit("from-emitter", 42),
    emitter_join: ({ room, rooms }) => emitter.in(room).socketsJoin(rooms),
    emitter_sse: () => emitter.serverSideEmit("from-emitter-sse", 7),
  };

  out({
    type: "ready",
    port: nodePort,
    sids: Object.fromEntries(Object.entries(clients).map(([k, c]) => [k, c.id])),
  });
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", async (line) => {
    const msg = JSON.parse(line);
    try {
      const value = await commands[msg.cmd](msg);
      out({ type: "result", id: msg.id, value: value === undefined ? null : value });
    } catch (e) {
      out({ type: "result", id: msg.id, error: String(e && e.message ? e.message : e) });
    }
  });
  rl.on("close", () => process.exit(0));
}

main().catch((e) => {
  out({ type: "fatal", error: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
