// A Node.js socket.io 4.8 server on @socket.io/redis-adapter 8.3 (node-redis 4), plus
// socket.io-client sockets on it and on the Rust server, driven line by line from stdin by
// adapter-redis/tests/node_interop.rs. Every line on stdout is one JSON object.
"use strict";
const { createAdapter } = require("@socket.io/redis-adapter");
const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");

const [redisPort, rustPort] = process.argv.slice(2).map(Number);
const { out, startServer, connectClient, sharedCommands, serve, runPeer } = require("./peer-server");

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
    ...sharedCommands(io),
    remote_emit: async ({ sid }) => {
      const s = (await io.fetchSockets()).find((x) => x.id === sid);
      if (!s) throw new Error(`no socket ${sid}`);
      s.emit("direct-from-node", "hi");
      return true;
    },
    all_rooms: async () => [...(await io.of("/").adapter.allRooms())].sort(),
    emitter_room: () => emitter.to("r1").emit("from-emitter", 42),
    emitter_join: ({ room, rooms }) => emitter.in(room).socketsJoin(rooms),
    emitter_sse: () => emitter.serverSideEmit("from-emitter-sse", 7),
  };

  serve(commands, nodePort, clients);
}

runPeer(main);
