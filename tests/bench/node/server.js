'use strict';
// The Node.js stack the gateway replaces, reduced to the benchmark events of docs/protocol.md:
// JWT auth (HS256, `auth.token`), `welcome`, `user online`/`user offline`, `create room`,
// `join room`, `leave room`, `room message`. One process is one node; with REDIS_URL the nodes
// form a cluster through @socket.io/redis-adapter (classic, key prefix `socket.io`).
//
// Like the original design, the room registry is a Map local to each node (the benchmark creates
// each room on every node it uses) and presence is counted per node.
//
// With ADAPTER_MODE=sharded the adapter is `createShardedAdapter` (SPUBLISH/SSUBSCRIBE,
// subscription mode `dynamic`: a room's channel is subscribed where the room has members), and
// REDIS_URL may be a `redis-cluster://host:port?node=host:port&...` URL (the gateway's form): the
// clients are then node-redis cluster clients (`createCluster`) seeded with every listed node.
//
// Environment: PORT (0 = ephemeral), HOST, JWT_SECRET (required), REDIS_URL, SERVER_ID,
// ADAPTER_MODE (`classic`, the default, or `sharded`).
// Prints `listening on http://<ip>:<port>` once bound, like the gateway binary.

const http = require('node:http');
const crypto = require('node:crypto');
const { Server } = require('socket.io');

const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || '127.0.0.1';
const SECRET = process.env.JWT_SECRET;
const REDIS_URL = process.env.REDIS_URL || '';
const SERVER_ID = process.env.SERVER_ID || `node-${process.pid}`;
const ADAPTER_MODE = process.env.ADAPTER_MODE || 'classic';
const BANNED_WORDS = ['spam', 'abuse', 'inappropriate'];
const HISTORY_SIZE = 100;
const MAX_ROOM_USERS = 1000;

if (!SECRET) {
  console.error('JWT_SECRET is required');
  process.exit(2);
}

function b64urlDecode(s) {
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

function verifyJwt(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  let header;
  let claims;
  try {
    header = JSON.parse(b64urlDecode(parts[0]).toString('utf8'));
    claims = JSON.parse(b64urlDecode(parts[1]).toString('utf8'));
  } catch {
    return null;
  }
  if (!header || header.alg !== 'HS256') return null;
  const expected = crypto.createHmac('sha256', SECRET).update(`${parts[0]}.${parts[1]}`).digest();
  const given = b64urlDecode(parts[2]);
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null;
  if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) return null;
  return claims;
}

const bannedPattern = new RegExp(BANNED_WORDS.join('|'), 'gi');
function sanitize(text) {
  return text.replace(/<[^>]*>/g, '').replace(bannedPattern, '***').trim();
}

function isStr(v, min, max) {
  return typeof v === 'string' && v.length >= min && v.length <= max;
}

const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/ready' || req.url === '/health' ? 200 : 404);
  res.end();
});
const io = new Server(server, {
  pingInterval: 25000,
  pingTimeout: 60000,
  maxHttpBufferSize: 1e6,
  cors: { origin: ['http://localhost:3000'], methods: ['GET', 'POST'], credentials: true },
});

// roomId -> { id, name, maxUsers, users: Set<socketId>, history: [] }
const rooms = new Map();
// userId -> number of local sockets
const userSockets = new Map();

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (!token) return next(new Error('Authentication error: No token provided'));
  const claims = verifyJwt(token);
  if (!claims) return next(new Error('Authentication error: Invalid token'));
  socket.data.userId = String(claims.userId || claims.sub);
  socket.data.username = String(claims.username || socket.data.userId);
  socket.data.role = claims.role || 'user';
  return next();
});

function fail(socket, ack, event, message) {
  socket.emit('error', { event, message });
  if (typeof ack === 'function') ack({ success: false, error: message });
}

io.on('connection', (socket) => {
  const { userId, username } = socket.data;
  socket.join(`user:${userId}`);
  socket.emit('welcome', {
    message: `Welcome, ${username}!`,
    serverId: SERVER_ID,
    socketId: socket.id,
    userId,
    username,
    timestamp: new Date().toISOString(),
  });
  const count = userSockets.get(userId) || 0;
  userSockets.set(userId, count + 1);
  if (count === 0) socket.broadcast.emit('user online', { userId, username });

  socket.on('create room', (data, ack) => {
    if (!data || !isStr(data.roomId, 1, 50) || !isStr(data.roomName, 1, 100)) {
      return fail(socket, ack, 'create room', 'Invalid room data');
    }
    const maxUsers = data.maxUsers === undefined ? 100 : data.maxUsers;
    if (!Number.isInteger(maxUsers) || maxUsers < 1 || maxUsers > MAX_ROOM_USERS) {
      return fail(socket, ack, 'create room', 'Invalid room data');
    }
    if (rooms.has(data.roomId)) {
      if (typeof ack === 'function') ack({ success: false, error: 'Room already exists' });
      return undefined;
    }
    rooms.set(data.roomId, {
      id: data.roomId,
      name: data.roomName,
      maxUsers,
      createdAt: new Date().toISOString(),
      users: new Set(),
      history: [],
    });
    if (typeof ack === 'function') ack({ success: true, roomId: data.roomId });
    return undefined;
  });

  socket.on('join room', (data, ack) => {
    const roomId = typeof data === 'string' ? data : data && data.roomId;
    if (!isStr(roomId, 1, 50)) return fail(socket, ack, 'join room', 'Invalid room id');
    const room = rooms.get(roomId);
    const refuse = (message) => {
      socket.emit('room error', { message });
      if (typeof ack === 'function') ack({ success: false, error: message });
    };
    if (!room) return refuse('Room does not exist');
    if (room.users.size >= room.maxUsers && !room.users.has(socket.id)) return refuse('Room is full');
    room.users.add(socket.id);
    socket.join(roomId);
    socket.to(roomId).emit('user joined', {
      socketId: socket.id,
      userId,
      username,
      roomId,
      userCount: room.users.size,
    });
    socket.emit('room joined', {
      roomId,
      roomName: room.name,
      userCount: room.users.size,
      users: Array.from(room.users),
    });
    if (typeof ack === 'function') ack({ success: true, roomId });
    return undefined;
  });

  function leave(roomId) {
    const room = rooms.get(roomId);
    if (!room || !room.users.delete(socket.id)) return false;
    socket.leave(roomId);
    socket.to(roomId).emit('user left', {
      socketId: socket.id,
      userId,
      username,
      roomId,
      userCount: room.users.size,
    });
    if (room.users.size === 0) rooms.delete(roomId);
    return true;
  }

  socket.on('leave room', (roomId, ack) => {
    if (!leave(roomId)) return fail(socket, ack, 'leave room', 'Not in room');
    if (typeof ack === 'function') ack({ success: true, roomId });
    return undefined;
  });

  socket.on('room message', (data, ack) => {
    if (!data || !isStr(data.roomId, 1, 50) || !isStr(data.message, 1, 1000)) {
      return fail(socket, ack, 'room message', 'Invalid message');
    }
    if (!socket.rooms.has(data.roomId)) return fail(socket, ack, 'room message', 'Not a member of this room');
    const message = sanitize(data.message);
    if (!message) return fail(socket, ack, 'room message', 'Message is empty');
    const msg = {
      from: userId,
      username,
      message,
      roomId: data.roomId,
      timestamp: new Date().toISOString(),
    };
    const room = rooms.get(data.roomId);
    if (room) {
      room.history.push(msg);
      if (room.history.length > HISTORY_SIZE) room.history.shift();
    }
    socket.to(data.roomId).emit('room message', msg);
    if (typeof ack === 'function') ack({ success: true });
    return undefined;
  });

  // `disconnecting`: socket.rooms is still populated (it is empty by `disconnect`).
  socket.on('disconnecting', () => {
    for (const roomId of Array.from(socket.rooms)) {
      if (roomId !== socket.id && !roomId.startsWith('user:')) leave(roomId);
    }
  });

  socket.on('disconnect', () => {
    const left = (userSockets.get(userId) || 1) - 1;
    if (left === 0) {
      userSockets.delete(userId);
      io.emit('user offline', { userId, username });
    } else {
      userSockets.set(userId, left);
    }
  });
});

// `redis-cluster://a:1?node=b:2&node=c:3` -> the seed URLs `redis://a:1`, `redis://b:2`, ...
function clusterRootNodes(url) {
  const parsed = new URL(url.replace(/^redis-cluster:/, 'http:'));
  const seeds = [parsed.host, ...parsed.searchParams.getAll('node')];
  return seeds.map((hostPort) => ({ url: `redis://${hostPort}` }));
}

function redisClients(url) {
  const { createClient, createCluster } = require('redis');
  if (url.startsWith('redis-cluster://')) {
    const rootNodes = clusterRootNodes(url);
    return [createCluster({ rootNodes }), createCluster({ rootNodes })];
  }
  const pub = createClient({ url });
  return [pub, pub.duplicate()];
}

async function main() {
  if (!['classic', 'sharded'].includes(ADAPTER_MODE)) {
    throw new Error(`ADAPTER_MODE must be classic or sharded, not ${ADAPTER_MODE}`);
  }
  if (REDIS_URL) {
    if (ADAPTER_MODE === 'classic' && REDIS_URL.startsWith('redis-cluster://')) {
      throw new Error('the classic adapter is benchmarked on a single Redis only; use ADAPTER_MODE=sharded with redis-cluster://');
    }
    const { createAdapter, createShardedAdapter } = require('@socket.io/redis-adapter');
    const [pubClient, subClient] = redisClients(REDIS_URL);
    pubClient.on('error', (e) => console.error('redis pub error', e.message));
    subClient.on('error', (e) => console.error('redis sub error', e.message));
    await Promise.all([pubClient.connect(), subClient.connect()]);
    io.adapter(
      ADAPTER_MODE === 'sharded'
        ? createShardedAdapter(pubClient, subClient, { subscriptionMode: 'dynamic' })
        : createAdapter(pubClient, subClient),
    );
  }
  server.listen(PORT, HOST, () => {
    const addr = server.address();
    process.stdout.write(`listening on http://${addr.address}:${addr.port}\n`);
  });
}

process.on('SIGTERM', () => process.exit(0));
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
