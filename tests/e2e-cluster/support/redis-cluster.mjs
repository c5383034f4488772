// A real Redis Cluster for the JS suites: `primaries` primaries with `replicas` replicas each,
// from Debian's redis-server on free ports in a temporary directory, formed with
// `redis-cli --cluster create`, every process killed by PID when the test ends (and on exit).
// The JS counterpart of tests/src/redis_cluster.rs (`RedisCluster`), with what the gateway's
// end-to-end tests need: the `redis-cluster://` URL, the slot owner of a key or shard channel,
// a primary killed and its replica promoted, a slot moved to another primary.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '../../e2e/support/gateway.mjs';
import { RespClient } from '../../e2e/support/redis.mjs';

/** Hash slots of a Redis Cluster. */
export const SLOT_COUNT = 16384;
/** How long formation, a failover or a slot move may take to be agreed by every node. */
const SETTLE_MS = 30_000;

const live = new Set();
process.on('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/** The slot of a key or shard channel name, `{hash tag}` rules included (as `CLUSTER KEYSLOT`). */
export function keySlot(name) {
  let bytes = Buffer.from(name, 'utf8');
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ b) & 0xff];
  return crc % SLOT_COUNT;
}

/** One command on a fresh connection to `port`. */
async function command(port, ...args) {
  const c = await RespClient.connect(port);
  try {
    return await c.command(...args);
  } finally {
    c.close();
  }
}

/**
 * `CLUSTER NODES` as `[{ id, port, primary, primaryId, slots: [[lo, hi]], failed }]`. Migration
 * markers (`[slot->-id]`) are left out.
 */
export function parseClusterNodes(text) {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((line) => {
      const f = line.trim().split(/\s+/);
      const flags = f[2].split(',');
      const port = Number(f[1].split('@')[0].split(':').pop());
      const slots = f
        .slice(8)
        .filter((s) => !s.startsWith('['))
        .map((s) => {
          const [lo, hi] = s.split('-').map(Number);
          return [lo, hi ?? lo];
        });
      return {
        id: f[0],
        port,
        primary: flags.includes('master'),
        primaryId: f[3] === '-' ? null : f[3],
        failed: flags.some((x) => x === 'fail' || x === 'fail?' || x === 'noaddr'),
        slots,
      };
    });
}

const owns = (node, slot) => node.slots.some(([lo, hi]) => slot >= lo && slot <= hi);

/**
 * Starts the cluster and waits until every node reports `cluster_state:ok`, knows every node,
 * sees all 16384 slots assigned and ok, and every replica's link is up.
 * Returns `{ url, port, ports, livePorts(), nodes(), slotOwner(slot), ownerOf(name), killPrimary(node),
 * migrateSlot(slot, to), command(port, ...args), stop() }`; `port` is the first node's (a node any
 * plain client can use for cluster-wide classic PUBLISH / SUBSCRIBE).
 */
export async function startRedisCluster(t, { primaries = 3, replicas = 0 } = {}) {
  for (const [program, pkg] of [['redis-server', 'redis-server'], ['redis-cli', 'redis-tools']]) {
    if (spawnSync(program, ['--version']).status !== 0) throw new Error(`${program} is not installed: apt-get install -y ${pkg}`);
  }
  if (primaries < 3) throw new Error(`a Redis Cluster needs at least 3 primaries, ${primaries} asked`);
  let lastError;
  // A port found free may be taken before the server binds it: a failed formation is retried.
  for (let attempt = 0; attempt < 3; attempt++) {
    const cluster = await tryStart({ primaries, replicas });
    try {
      await cluster.formed;
      t?.after(() => cluster.stop());
      return cluster;
    } catch (e) {
      lastError = e;
      await cluster.stop();
    }
  }
  throw lastError;
}

async function tryStart({ primaries, replicas }) {
  const total = primaries * (1 + replicas);
  const dir = mkdtempSync(join(tmpdir(), 'e2e-redis-cluster-'));
  const taken = new Set();
  const distinctPort = async () => {
    for (;;) {
      const p = await freePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
  };
  const servers = [];
  for (let i = 0; i < total; i++) {
    const port = await distinctPort();
    const busPort = await distinctPort();
    const child = spawn(
      'redis-server',
      [
        '--port', String(port), '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes', '--cluster-port', String(busPort), '--cluster-config-file', `nodes-${port}.conf`,
        // A dead primary is noticed after one second, and any replica may take over however
        // long its link has been down: failovers take seconds, not minutes.
        '--cluster-node-timeout', '1000', '--cluster-replica-validity-factor', '0',
        '--save', '', '--appendonly', 'no', '--protected-mode', 'no',
      ],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    child.stdout.on('data', (d) => (log = (log + d).slice(-4000)));
    child.stderr.on('data', (d) => (log = (log + d).slice(-4000)));
    live.add(child.pid);
    const exited = new Promise((r) => child.once('exit', () => (live.delete(child.pid), r())));
    servers.push({ port, child, exited, dead: false, log: () => log });
  }
  const ports = servers.map((s) => s.port);
  const livePorts = () => servers.filter((s) => !s.dead).map((s) => s.port);
  const nodesSeenBy = async (port) => parseClusterNodes(await command(port, 'CLUSTER', 'NODES')).filter((n) => !n.failed);
  const nodes = () => nodesSeenBy(livePorts()[0]);
  const slotOwner = async (slot) => {
    const owner = (await nodes()).find((n) => n.primary && owns(n, slot));
    if (!owner) throw new Error(`no live primary owns slot ${slot}`);
    return owner;
  };
  /** Every live node reports cluster_state:ok and sees a node `expected` accepts owning `slot`. */
  const allAgreeOnOwner = async (slot, expected) => {
    for (const port of livePorts()) {
      if (!(await command(port, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) return false;
      const owner = (await nodesSeenBy(port)).find((n) => n.primary && owns(n, slot));
      if (!owner || !expected(owner)) return false;
    }
    return true;
  };
  const stop = async () => {
    for (const s of servers) {
      if (live.has(s.child.pid)) {
        process.kill(s.child.pid, 'SIGKILL');
        await s.exited;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `redis-cluster://127.0.0.1:${ports[0]}?${ports.slice(1).map((p) => `node=127.0.0.1:${p}`).join('&')}`;

  const formed = (async () => {
    for (const s of servers) {
      await waitFor(() => command(s.port, 'PING').then((r) => r === 'PONG'), 10_000, { what: `redis-server (cluster) on ${s.port}; log: ${s.log()}` });
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'], {
      encoding: 'utf8',
      timeout: SETTLE_MS,
    });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    let last = '';
    await waitFor(async () => {
      for (const port of ports) {
        const info = await command(port, 'CLUSTER', 'INFO');
        for (const want of ['cluster_state:ok', `cluster_known_nodes:${total}`, `cluster_slots_assigned:${SLOT_COUNT}`, `cluster_slots_ok:${SLOT_COUNT}`]) {
          if (!info.split('\r\n').includes(want)) {
            last = `node ${port} lacks ${want}`;
            return false;
          }
        }
        if ((await nodesSeenBy(port)).filter((n) => n.primary).length !== primaries) {
          last = `node ${port} does not see ${primaries} primaries`;
          return false;
        }
        const replication = await command(port, 'INFO', 'replication');
        if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) {
          last = `replica ${port} has no link to its primary`;
          return false;
        }
      }
      return true;
    }, SETTLE_MS, { interval: 50, what: `the Redis Cluster on ${ports.join(',')} to form (${last})` });
  })();
  formed.catch(() => {});

  return {
    url,
    port: ports[0],
    ports,
    formed,
    livePorts,
    nodes,
    nodesSeenBy,
    slotOwner,
    /** The primary owning the slot of a key or shard channel name. */
    ownerOf: (name) => slotOwner(keySlot(name)),
    command,
    stop,
    /**
     * SIGKILLs the primary `primary` (by PID) and waits until one of its replicas owns its slots
     * in the eyes of every live node, each reporting `cluster_state:ok`. Returns the promoted node.
     */
    killPrimary: async (primary) => {
      const replicaIds = (await nodes()).filter((n) => n.primaryId === primary.id).map((n) => n.id);
      if (replicaIds.length === 0) throw new Error(`primary on port ${primary.port} has no replica to promote`);
      const server = servers.find((s) => s.port === primary.port && !s.dead);
      if (!server) throw new Error(`no live node on port ${primary.port}`);
      const slot = primary.slots[0]?.[0];
      if (slot === undefined) throw new Error(`node on port ${primary.port} owns no slot`);
      server.dead = true;
      process.kill(server.child.pid, 'SIGKILL');
      await server.exited;
      await waitFor(() => allAgreeOnOwner(slot, (o) => replicaIds.includes(o.id)), SETTLE_MS, {
        interval: 50,
        what: `a replica of the killed primary ${primary.port} to own slot ${slot} on every node`,
      });
      return slotOwner(slot);
    },
    /**
     * Moves `slot` and its keys to the primary `to` as `redis-cli --cluster reshard` does
     * (SETSLOT IMPORTING / MIGRATING, MIGRATE in batches, SETSLOT NODE on every primary) and waits
     * until every live node agrees. `onMigrating` runs while the slot is MIGRATING, before its
     * keys move. Returns the number of keys moved.
     */
    migrateSlot: async (slot, to, { onMigrating } = {}) => {
      const from = await slotOwner(slot);
      if (from.id === to.id) return 0;
      await command(to.port, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', from.id);
      await command(from.port, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id);
      if (onMigrating) await onMigrating();
      let moved = 0;
      for (;;) {
        const keys = await command(from.port, 'CLUSTER', 'GETKEYSINSLOT', slot, 100);
        if (keys.length === 0) break;
        await command(from.port, 'MIGRATE', '127.0.0.1', to.port, '', 0, 5000, 'KEYS', ...keys);
        moved += keys.length;
      }
      // The target first, so the slot is never owned by nobody; then the source, then the rest.
      await command(to.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
      await command(from.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
      for (const other of (await nodes()).filter((n) => n.primary && n.id !== from.id && n.id !== to.id)) {
        await command(other.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
      }
      await waitFor(() => allAgreeOnOwner(slot, (o) => o.id === to.id), SETTLE_MS, {
        interval: 50,
        what: `every node to agree that ${to.port} owns slot ${slot}`,
      });
      return moved;
    },
  };
}
