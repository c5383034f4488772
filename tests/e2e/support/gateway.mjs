// Shared support for the end-to-end tests: start the real gateway binary on a free port, talk
// to it with socket.io-client 4.8, wait for conditions with deadlines, and clean up by PID.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test as nodeTest } from 'node:test';
import { io } from 'socket.io-client';
import { randomSecret, userToken } from './jwt.mjs';

/** Default deadline of every wait (ms); raise E2E_TIMEOUT_MS on a slow machine. */
export const T = Number(process.env.E2E_TIMEOUT_MS || 10_000);

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const GATEWAY_BIN = process.env.GATEWAY_BIN || resolve(REPO_ROOT, 'target/debug/gateway');

/** Transport settings the core flows run under (docs/protocol.md, section "Namespaces and events", transport). */
export const TRANSPORTS = [
  { name: 'websocket', opts: { transports: ['websocket'] } },
  { name: 'polling+upgrade', opts: {} },
];

const live = new Set();
const startedInThisFile = [];

function killAllSync() {
  for (const gw of live) {
    try {
      process.kill(gw.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killAllSync();
    process.exit(130);
  });
}

/** A port that was free a moment ago (for tests that must know the port before start). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

/**
 * Starts the gateway. `t` (a test context or a suite hook context) gets an `after` hook that kills it.
 * Options: `args` (extra flags), `env`, `secret` (default random), `rateLimit` (connection rate limit,
 * default 100000), `port` (default 0), `noSecret` (no --jwt-secret at all), `serverId`, `redis` (start a
 * redis-server for this gateway and pass `--redis-url`).
 */
export async function startGateway(t, options = {}) {
  if (!existsSync(GATEWAY_BIN)) {
    throw new Error(`gateway binary not found at ${GATEWAY_BIN}: run \`cargo build -p gateway\` or set GATEWAY_BIN`);
  }
  if (options.redis) {
    const { startRedis } = await import('./redis.mjs');
    const redis = await startRedis(t);
    options = { ...options, redis: false, args: ['--redis-url', redis.url, ...(options.args ?? [])] };
  }
  const secret = options.secret ?? randomSecret();
  const serverId = options.serverId ?? `e2e-${process.pid}-${startedInThisFile.length}`;
  const args = ['--port', String(options.port ?? 0), '--host', '127.0.0.1', '--server-id', serverId];
  if (!options.noSecret) args.push('--jwt-secret', secret);
  if (!(options.args ?? []).includes('--connection-rate-limit')) {
    args.push('--connection-rate-limit', String(options.rateLimit ?? 100000));
  }
  args.push(...(options.args ?? []));
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', ...(options.env ?? {}) };
  if (!options.keepEnvSecret) delete env.JWT_SECRET;
  if (options.env?.JWT_SECRET) env.JWT_SECRET = options.env.JWT_SECRET;

  const child = spawn(GATEWAY_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const gw = {
    pid: child.pid,
    child,
    secret,
    serverId,
    args,
    stdout: '',
    stderr: '',
    exitCode: undefined,
    exitSignal: undefined,
    url: undefined,
  };
  live.add(gw);
  startedInThisFile.push(gw);
  gw.exited = new Promise((res) => {
    child.once('exit', (code, signal) => {
      gw.exitCode = code;
      gw.exitSignal = signal;
      live.delete(gw);
      res({ code, signal });
    });
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    gw.stderr += d;
    if (gw.stderr.length > 2_000_000) gw.stderr = gw.stderr.slice(-1_000_000);
  });
  child.stdout.setEncoding('utf8');

  const listening = new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`gateway did not print "listening on" within 20 s\nstderr:\n${tail(gw.stderr)}`)), 20_000);
    child.stdout.on('data', (d) => {
      gw.stdout += d;
      const m = gw.stdout.match(/^listening on (http:\/\/\S+)$/m);
      if (m && !gw.url) {
        clearTimeout(timer);
        gw.url = m[1].replace(/\/$/, '');
        res();
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      rej(e);
    });
    gw.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      if (!gw.url) rej(new Error(`gateway exited (code ${code}, signal ${signal}) before listening\nstderr:\n${tail(gw.stderr)}`));
    });
  });

  const stop = async (signal = 'SIGKILL') => {
    if (gw.exitCode === undefined && gw.exitSignal === undefined) {
      try {
        process.kill(gw.pid, signal);
      } catch {
        // already gone
      }
      await gw.exited;
    }
  };
  gw.stop = stop;
  gw.token = (user = {}) => userToken(secret, user);
  gw.port = () => Number(new URL(gw.url).port);
  if (t) t.after(() => stop());
  await listening;
  return gw;
}

/** Starts a gateway that is expected to fail: resolves with its exit code and output. */
export async function runGatewayToExit(args, { env = {}, timeoutMs = 20_000 } = {}) {
  if (!existsSync(GATEWAY_BIN)) throw new Error(`gateway binary not found at ${GATEWAY_BIN}`);
  const child = spawn(GATEWAY_BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const gw = { pid: child.pid };
  live.add(gw);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }, timeoutMs);
  const [code, signal] = await new Promise((res) => child.once('exit', (c, s) => res([c, s])));
  clearTimeout(timer);
  live.delete(gw);
  return { code, signal, stdout, stderr };
}

export function tail(text, n = 4000) {
  return text.length > n ? `…${text.slice(-n)}` : text;
}

function dumpGatewayLogs(title, firstIndex) {
  for (const [i, gw] of startedInThisFile.entries()) {
    if (i < firstIndex && !live.has(gw)) continue;
    process.stderr.write(`\n----- gateway ${gw.serverId} (pid ${gw.pid}) stderr, failing test "${title}" -----\n${tail(gw.stderr)}\n-----\n`);
  }
}

/** `node:test`'s `test`, printing the stderr of this file's gateways when the test fails. */
export function test(name, optionsOrFn, maybeFn) {
  const fn = typeof optionsOrFn === 'function' ? optionsOrFn : maybeFn;
  const options = typeof optionsOrFn === 'function' ? {} : optionsOrFn;
  return nodeTest(name, { timeout: 60_000, ...options }, async (t) => {
    const firstIndex = startedInThisFile.length;
    try {
      await fn(t);
    } catch (e) {
      dumpGatewayLogs(name, firstIndex);
      throw e;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Waiting with deadlines.

/** Resolves with the first argument of the next `event` (or all arguments with `{ all: true }`). */
export function once(emitter, event, ms = T, { all = false } = {}) {
  const waiting = new Promise((res, rej) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      rej(new Error(`timed out after ${ms} ms waiting for "${event}"`));
    }, ms);
    function handler(...args) {
      clearTimeout(timer);
      emitter.off(event, handler);
      res(all ? args : args[0]);
    }
    emitter.on(event, handler);
  });
  // Marked handled so a test that fails before awaiting it reports its own error, not this one.
  waiting.catch(() => {});
  return waiting;
}

/** Polls `fn` until it returns a truthy value (which is returned); rejects after `ms`. */
export async function waitFor(fn, ms = T, { interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + ms;
  let lastError;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${lastError ? `: ${lastError.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Records every payload of `event` on `socket` into an array. */
export function collect(socket, event) {
  const seen = [];
  socket.on(event, (...args) => seen.push(args.length > 1 ? args : args[0]));
  return seen;
}

// ---------------------------------------------------------------------------------------------
// Socket.IO clients.

const openSockets = new Set();
process.on('exit', () => {
  for (const s of openSockets) s.disconnect();
});

/**
 * Creates a socket (not yet awaited). `token` goes into `auth.token` unless `auth` is given.
 * Reconnection is off so failures stay visible.
 */
export function client(gw, { namespace = '/', token, auth, transport = {}, ...rest } = {}) {
  const url = `${gw.url ?? gw}${namespace === '/' ? '' : namespace}`;
  const socket = io(url, {
    forceNew: true,
    reconnection: false,
    timeout: 10_000,
    auth: auth ?? (token === undefined ? {} : { token }),
    ...transport,
    ...rest,
  });
  openSockets.add(socket);
  socket.on('disconnect', () => openSockets.delete(socket));
  return socket;
}

/**
 * Waits for the first of `connect` and `connect_error`: resolves `{ connected: true }` or
 * `{ connected: false, error }`; rejects with `timeoutMessage` after `ms`.
 */
function firstConnectOutcome(socket, ms, timeoutMessage) {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      cleanup();
      rej(new Error(timeoutMessage));
    }, ms);
    const onConnect = () => {
      cleanup();
      res({ connected: true });
    };
    const onError = (error) => {
      cleanup();
      res({ connected: false, error });
    };
    function cleanup() {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('connect_error', onError);
    }
    socket.on('connect', onConnect);
    socket.on('connect_error', onError);
  });
}

/** Waits for `connect`; rejects with the `connect_error` message otherwise. */
export async function connected(socket, ms = 10_000) {
  if (socket.connected) return socket;
  const { connected: ok, error } = await firstConnectOutcome(
    socket,
    ms,
    `socket did not connect within ${ms} ms`,
  );
  if (!ok) throw new Error(`connect_error: ${error?.message}`);
  return socket;
}

/** Waits for `connect_error` and returns the error; rejects if the socket connects instead. */
export async function connectError(socket, ms = 10_000) {
  const { connected: ok, error } = await firstConnectOutcome(
    socket,
    ms,
    `neither connect nor connect_error within ${ms} ms`,
  );
  socket.disconnect();
  if (ok) throw new Error('connected, but a connect_error was expected');
  return error;
}

/**
 * Connects a user and waits for both `connect` and `welcome`. Returns `{ socket, welcome }`.
 * The `welcome` listener is registered before connecting so it cannot be missed.
 */
export async function connectUser(gw, user, { namespace = '/', transport = {}, waitWelcome = namespace === '/', ...rest } = {}) {
  const token = gw.token(user);
  const socket = client(gw, { namespace, token, transport, ...rest });
  const welcome = waitWelcome ? once(socket, 'welcome', 10_000) : null;
  await connected(socket);
  return { socket, welcome: welcome ? await welcome : undefined };
}

/** Emits with an acknowledgement and a deadline. */
export function ask(socket, event, ...args) {
  return socket.timeout(T).emitWithAck(event, ...args);
}

/**
 * A round trip on `socket` after earlier actions: frames the server queued to this socket before
 * answering are delivered before the answer, so afterwards the absence of an event is meaningful.
 */
export async function barrier(socket) {
  await ask(socket, 'get online users');
}

/** Closes sockets, ignoring ones already closed. */
export function closeAll(...sockets) {
  for (const s of sockets.flat()) s?.disconnect();
}

let userCounter = 0;
/** A unique user for this process. */
export function newUser(prefix = 'user', extra = {}) {
  userCounter += 1;
  const id = `${prefix}-${process.pid}-${userCounter}`;
  return { userId: id, username: `${prefix}${userCounter}`, ...extra };
}

/** A unique room id. */
export function newRoomId(prefix = 'room') {
  userCounter += 1;
  return `${prefix}-${process.pid}-${userCounter}`;
}

export const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$/;

/**
 * One gateway for a whole test file or `describe` block: started in `before`, killed in `after`.
 * Returns a function giving the running gateway. `redis: true` first starts a redis-server and
 * passes `--redis-url` (the node then keeps its state in Redis).
 */
export function suiteGateway(options = {}) {
  let gw;
  let redis;
  before(async () => {
    const { redis: withRedis, ...rest } = options;
    if (withRedis) {
      const { startRedis } = await import('./redis.mjs');
      redis = await startRedis(null);
      rest.args = ['--redis-url', redis.url, ...(rest.args ?? [])];
    }
    gw = await startGateway(null, rest);
  });
  after(async () => {
    await gw?.stop();
    await redis?.stop();
  });
  return () => {
    if (!gw) throw new Error('suite gateway not started (did its before hook fail?)');
    return gw;
  };
}

/** fetch() against the gateway with a deadline. */
export async function http(gw, path, { method = 'GET', token, body, headers = {}, ms = T } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined && typeof body !== 'string') {
    h['content-type'] = 'application/json';
    body = JSON.stringify(body);
  }
  const res = await fetch(`${gw.url}${path}`, { method, headers: h, body, signal: AbortSignal.timeout(ms) });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}
