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
const { createShardedAdapter } = require("@socket.io/redis-adapter");
const { createCluster } = require("redis");

const MODES = ["static", "dynamic", "dynamic-private"];
const [mode, nodes, otherPortArg] = process.argv.slice(2);
const otherPort = Number(otherPortArg || 0);
const { out, startServer, connectClient, sharedCommands, serve, runPeer } = require("./peer-server");

async function main() {
  if (!MODES.includes(mode) || !nodes) {
    throw new Error("usage: node sharded-peer.js <static|dynamic|dynamic-private> <host:port,...> <port or 0>");
  }
  const rootNodes = nodes.split(",").map((n) => ({ url: `redis://${n}` }));
  const pub = createCluster({ rootNodes });
  const sub = createCluster({ rootNodes });
  for (const c of [pub, sub]) c.on("error", (e) => out({ type: "log", error: String(e) }));
  await Promise.all([pub.connect(), sub.connect()]);
  const { io, port: nodePort } = await startServer(createShardedAdapter(pub, sub, { subscriptionMode: mode }));

  const clients = {};
  const connect = (name, port, rooms) => connectClient(clients, name, port, rooms);
  await connect("cn", nodePort, ["r1"]);
  if (otherPort) {
    await connect("cr", otherPort, ["r1"]);
    await connect("cr2", otherPort, ["r2"]);
  }

  const commands = {
    ...sharedCommands(io),
    emit_to_socket: ({ sid }) => io.to(sid).emit("direct-from-node", "hi"),
    fetch_room: async ({ room }) => (await io.in(room).fetchSockets()).map((s) => s.id).sort(),
    sse: () => io.serverSideEmit("from-node-sse", 7),
    close: async () => {
      for (const c of Object.values(clients)) c.disconnect();
      await new Promise((r) => io.close(() => r()));
      return true;
    },
  };

  serve(commands, nodePort, clients, { uid: io.of("/").adapter.uid });
}

runPeer(main);
