// Cluster support for the multi-node end-to-end tests: one redis-server (or, with
// E2E_REDIS=cluster, a three-primary Redis Cluster), several gateway processes sharing it (and one
// JWT secret), nginx running the shipped nginx.conf, clients bound to chosen loopback source
// addresses, and small waiting/inspection helpers. Reuses tests/e2e/support.
//
// The environment chooses what the gateways run on (tests/e2e-cluster/README.md):
// - E2E_REDIS: `single` (default: one redis-server) or `cluster` (3 primaries from
//   support/redis-cluster.mjs, `--redis-url redis-cluster://...`);
// - E2E_ADAPTER_MODE: unset (the gateway's default), `classic` or `sharded`
//   (`--adapter-mode`);
// - E2E_ADAPTER_SUBSCRIPTIONS: sharded mode's `--adapter-subscriptions` (default `static`).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, cpSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, http, REPO_ROOT, startGateway, tail, waitFor, once, client, connected } from '../../e2e/support/gateway.mjs';
import { randomSecret, userToken } from '../../e2e/support/jwt.mjs';
import { RespClient, startRedis } from '../../e2e/support/redis.mjs';
import { startRedisCluster } from './redis-cluster.mjs';

export { RespClient };

/** What E2E_REDIS asks for: `single` or `cluster`. */
export const REDIS_KIND = (() => {
  const kind = process.env.E2E_REDIS || 'single';
  if (kind !== 'single' && kind !== 'cluster') throw new Error(`E2E_REDIS must be \`single\` or \`cluster\`, not \`${kind}\``);
  return kind;
})();

/** The gateway flags E2E_ADAPTER_MODE and E2E_ADAPTER_SUBSCRIPTIONS ask for. */
export const ADAPTER_ARGS = (() => {
  const mode = process.env.E2E_ADAPTER_MODE;
  const subscriptions = process.env.E2E_ADAPTER_SUBSCRIPTIONS;
  const args = [];
  if (mode) {
    if (mode !== 'classic' && mode !== 'sharded') throw new Error(`E2E_ADAPTER_MODE must be \`classic\` or \`sharded\`, not \`${mode}\``);
    args.push('--adapter-mode', mode);
  }
  // Sharded runs name their subscriptions (static unless asked); others only when asked.
  if (subscriptions || mode === 'sharded') args.push('--adapter-subscriptions', subscriptions || 'static');
  return args;
})();

/**
 * The Redis the environment asks for: `{ url, port, stop, ports? }`. `port` is a node that takes
 * plain commands and classic pub/sub (on a cluster, the first node: classic PUBLISH and SUBSCRIBE
 * reach every node). `redisReplicas` sets the replicas per primary of a cluster.
 */
export async function startSuiteRedis(t, { redisKind = REDIS_KIND, redisReplicas = 0 } = {}) {
  if (redisKind === 'cluster') return startRedisCluster(t, { primaries: 3, replicas: redisReplicas });
  return startRedis(t);
}

/**
 * Connections subscribed to the classic channel `channel` on the whole deployment: `PUBSUB NUMSUB`
 * answers for the node asked only, so on a cluster it is summed over every live node.
 */
export async function classicSubscribers(redis, channel) {
  let total = 0;
  for (const port of redis.livePorts ? redis.livePorts() : [redis.port]) {
    const db = await RespClient.connect(port);
    try {
      total += Number((await db.command('PUBSUB', 'NUMSUB', channel))[1]);
    } finally {
      db.close();
    }
  }
  return total;
}

let clusterCounter = 0;

/**
 * Starts the Redis the environment asks for (`startSuiteRedis`) and `nodes` gateways on it. Every
 * gateway shares the JWT secret, the Redis URL and the adapter flags of the environment
 * (`ADAPTER_ARGS`), has its own `--server-id`, `--connection-rate-limit 100000`,
 * `--stats-ttl-secs statsTtl` and a liveness TTL no longer than that. `redisKind` (`single` or
 * `cluster`), `redisReplicas` (per primary) and `adapterArgs` override the environment's choice.
 * `fixedPorts: true` gives each node a port chosen before start (needed behind nginx and to restart
 * a node on the same port). `t` (test context) gets after-hooks; with `t = null` call `stop()`.
 */
export async function startCluster(t, { nodes = 3, statsTtl = 3, args = [], fixedPorts = false, names, redisKind, redisReplicas = 0, adapterArgs = ADAPTER_ARGS } = {}) {
  clusterCounter += 1;
  const redis = await startSuiteRedis(t, { redisKind, redisReplicas });
  const secret = randomSecret();
  const tag = `${process.pid}-${clusterCounter}`;
  const ids = (names ?? ['A', 'B', 'C', 'D', 'E'].slice(0, nodes)).map((n) => `node${n}-${tag}`);
  const ports = fixedPorts ? await Promise.all(ids.map(() => freePort())) : ids.map(() => 0);
  // Deaths are judged by the liveness key (LIVENESS_TTL_MS): keep it no longer than the stats TTL the
  // tests time their death checks by.
  const livenessMs = String(Math.min(statsTtl * 1000, 6000));
  const nodeArgs = ['--redis-url', redis.url, '--stats-ttl-secs', String(statsTtl), '--liveness-ttl-ms', livenessMs, '--connection-rate-limit', '100000', ...adapterArgs, ...args];
  const startNode = (i) => startGateway(t, { secret, serverId: ids[i], port: ports[i], args: nodeArgs });
  const gws = await Promise.all(ids.map((_, i) => startNode(i)));
  const cluster = {
    redis,
    secret,
    ids,
    ports,
    nodes: gws,
    token: (user) => userToken(secret, user),
    /** Starts node `i` again (same id, same port when fixed) and replaces it in `nodes`. */
    restart: async (i) => {
      gws[i] = await startNode(i);
      return gws[i];
    },
    stop: async () => {
      for (const gw of gws) await gw.stop();
      await redis.stop();
    },
  };
  return cluster;
}

/** `GET /cluster/stats` on one node: `{ status, json, ids }` with the listed serverIds sorted. */
export async function clusterStats(gw, ms = 3000) {
  const r = await http(gw, '/cluster/stats', { ms });
  const ids = Array.isArray(r.json?.nodes) ? r.json.nodes.map((n) => n?.serverId).sort() : null;
  return { status: r.status, json: r.json, ids };
}

/** Waits until `/cluster/stats` on `gw` lists exactly `expectedIds`. */
export async function waitForStatsIds(gw, expectedIds, ms, what = '') {
  const want = [...expectedIds].sort();
  let last;
  try {
    await waitFor(async () => {
      last = await clusterStats(gw);
      return last.status === 200 && JSON.stringify(last.ids) === JSON.stringify(want);
    }, ms, { interval: 100, what: `/cluster/stats on ${gw.serverId} to list ${JSON.stringify(want)} ${what}` });
  } catch (e) {
    throw new Error(`${e.message}; last answer: ${last ? `${last.status} ${JSON.stringify(last.json)}` : 'none'}`);
  }
}

/** Waits until `/ready` on `gw` answers `status`. */
export async function waitReady(gw, status = 200, ms = 20_000) {
  let last;
  await waitFor(async () => {
    last = await http(gw, '/ready', { ms: 2000 }).then((r) => r.status).catch((e) => e.message);
    return last === status;
  }, ms, { interval: 100, what: `/ready on ${gw.serverId} to answer ${status} (last: ${last})` });
}

// ---------------------------------------------------------------------------------------------
// Clients.

/**
 * A user's socket on a node (or a URL), connected and welcomed: `{ socket, welcome, user }`.
 * `url` overrides the node's URL (nginx). `transport` holds socket.io-client options.
 */
export async function userOn(cluster, target, user, { namespace = '/', transport = {}, t, ...rest } = {}) {
  const base = typeof target === 'string' ? target : target.url;
  const socket = client(base, { namespace, token: cluster.token(user), transport, ...rest });
  if (t) t.after(() => socket.disconnect());
  const welcome = namespace === '/' ? once(socket, 'welcome', 10_000) : null;
  try {
    await connected(socket);
  } catch (e) {
    socket.disconnect();
    throw new Error(`${user.userId} could not connect to ${base}${namespace}: ${e.message}`);
  }
  return { socket, user, welcome: welcome ? await welcome : undefined };
}

/**
 * socket.io-client options that make every connection of one client leave from `localAddress`
 * (a loopback address such as 127.1.0.1). Polling (xmlhttprequest-ssl in Node) takes an
 * `http.Agent` bound to the address; the `ws` WebSocket takes `localAddress` directly (engine.io-
 * client 6.6 passes both `agent` and `localAddress` on to `ws`).
 */
export function fromAddress(localAddress, transports) {
  const opts = { agent: new Agent({ localAddress }), localAddress };
  if (transports) opts.transports = transports;
  return opts;
}

/** Records every payload of `event` on `socket`. */
export function record(socket, event) {
  const seen = [];
  socket.on(event, (payload) => seen.push(payload));
  return seen;
}

/** Waits until `list` has at least `n` entries matching `pred`, with a message naming `what`. */
export async function waitForEntries(list, pred, { n = 1, ms = 5000, what }) {
  await waitFor(() => list.filter(pred).length >= n, ms, {
    interval: 20,
    what: `${what} (got ${list.length} event(s): ${tail(JSON.stringify(list), 600)})`,
  });
}

/** Emits with an ack and a deadline; the error names the event and node. */
export async function call(socket, event, ...args) {
  try {
    return await socket.timeout(5000).emitWithAck(event, ...args);
  } catch (e) {
    throw new Error(`no ack for "${event}" within 5 s (${e.message})`);
  }
}

/** `fn()` must settle within `ms`; returns `{ value, ms }` (elapsed) or throws naming `what`. */
export async function within(ms, what, fn) {
  const started = Date.now();
  let timer;
  const value = await Promise.race([
    Promise.resolve().then(fn),
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what} did not return within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
  return { value, ms: Date.now() - started };
}

/** Subscribes a raw RESP connection to `cluster:message`; returns `{ messages (parsed), close }`. */
export async function watchControlBus(redisPort) {
  const sub = await RespClient.connect(redisPort);
  const messages = [];
  await sub.subscribe('cluster:message', (_channel, payload) => {
    try {
      messages.push(JSON.parse(payload));
    } catch {
      messages.push({ unparsable: payload });
    }
  });
  return { messages, close: () => sub.close() };
}

// ---------------------------------------------------------------------------------------------
// nginx with the shipped configuration.

const liveNginx = new Map();
process.on('exit', () => {
  for (const [pid, workers] of liveNginx) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
    for (const w of workers) {
      try {
        process.kill(w, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
});

function childPids(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Runs nginx with `nginx/nginx.conf` as shipped, in a copy of `nginx/` whose `upstream.conf` lists
 * `127.0.0.1:<port>` for every given port and whose `listen.conf` is a free loopback port.
 * Returns `{ url, port, pid, accessLog() -> [{ addr, status, request, line }], stderr(), stop() }`.
 */
export async function startNginx(t, upstreamPorts) {
  if (spawnSync('nginx', ['-v']).error) {
    throw new Error('nginx is not installed: apt-get install -y nginx-light');
  }
  const dir = mkdtempSync(join(tmpdir(), 'e2e-cluster-nginx-'));
  chmodSync(dir, 0o755);
  cpSync(resolve(REPO_ROOT, 'nginx'), dir, { recursive: true });
  const port = await freePort();
  writeFileSync(join(dir, 'upstream.conf'), upstreamPorts.map((p) => `server 127.0.0.1:${p} max_fails=3 fail_timeout=10s;\n`).join(''));
  // Listen on every loopback address, so clients bound to 127.N.0.1 can reach 127.0.0.1:<port>.
  writeFileSync(join(dir, 'listen.conf'), `listen 127.0.0.1:${port};\n`);
  // The access log goes to /dev/stdout; nginx cannot open that on a socket (Node's 'pipe'), so
  // stdout is a regular file, parsed on demand.
  const accessPath = join(dir, 'access.log');
  const accessFd = openSync(accessPath, 'w');
  const child = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', `${dir}/`, '-g', `daemon off; pid ${dir}/nginx.pid;`], {
    stdio: ['ignore', accessFd, 'pipe'],
  });
  closeSync(accessFd);
  const workers = new Set();
  liveNginx.set(child.pid, workers);
  let stderr = '';
  const accessLog = () => {
    let text = '';
    try {
      text = readFileSync(accessPath, 'utf8');
    } catch {
      // removed after stop
    }
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        // combined format: addr - user [time] "request" status bytes "referer" "agent"
        const m = line.match(/^(\S+) \S+ \S+ \[[^\]]*\] "([^"]*)" (\d{3}) /);
        return m ? { addr: m[1], request: m[2], status: Number(m[3]), line } : { line };
      });
  };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (stderr += d));
  let exitInfo;
  const exited = new Promise((res) => child.once('exit', (code, signal) => res((exitInfo = { code, signal }))));
  const stop = async () => {
    if (exitInfo) return;
    for (const w of childPids(child.pid)) workers.add(w);
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // gone
    }
    const done = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 5000))]);
    if (!done) {
      for (const pid of [child.pid, ...workers]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await exited;
    }
    liveNginx.delete(child.pid);
    rmSync(dir, { recursive: true, force: true });
  };
  t?.after(stop);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exitInfo) throw new Error(`nginx exited (${JSON.stringify(exitInfo)}): ${stderr}`);
    const ok = await fetch(`${url}/nginx-health`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status === 200, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`nginx on ${url} did not answer /nginx-health within 10 s: ${tail(stderr, 1500)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const w of childPids(child.pid)) workers.add(w);
  return { url, port, pid: child.pid, dir, accessLog, stderr: () => stderr, stop };
}
