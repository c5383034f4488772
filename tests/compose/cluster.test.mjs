// The compose cluster for real (run by tests/compose/run.sh, which brings it up and passes its
// coordinates in the environment): socket.io-client processes in containers on three client
// networks whose /24s nginx's ip_hash sends to three different nodes, then a node SIGKILLed, a
// node stopped gracefully, and the extra pool scaled out and in. Every wait has a deadline, and
// each step prints how long it took.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const DOCKER = process.env.DOCKER || '/usr/bin/docker';
const COMPOSE = JSON.parse(process.env.COMPOSE_ARGS); // ["compose", "-p", ..., "-f", ...]
const SCALE_FILES = JSON.parse(process.env.COMPOSE_SCALE_ARGS); // extra "-f"/"--profile" args
const NETWORKS = JSON.parse(process.env.CLIENT_NETWORKS); // three docker network names
const NODE_IMAGE = process.env.NODE_IMAGE;
const TESTS_DIR = process.env.TESTS_DIR;
const LABEL = process.env.AGENT_LABEL;

const compose = (...args) => run(DOCKER, [...COMPOSE, ...args], { maxBuffer: 16 << 20 });
const since = (t0) => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

async function waitFor(what, ms, fn, every = 200) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last?.message ?? JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** One agent container (tests/compose/agent.mjs) on a client network. */
class Agent {
  constructor(name, network) {
    this.name = name;
    this.events = [];
    this.pending = new Map();
    this.seq = 0;
    this.proc = spawn(DOCKER, [
      'run', '-i', '--rm', '--name', `${LABEL}-${name}`, '--label', LABEL, '--network', network,
      '-e', 'AGENT_BASE_URL=http://nginx:8080', '-v', `${TESTS_DIR}:/tests:ro`, '-w', '/tests',
      NODE_IMAGE, 'node', 'compose/agent.mjs',
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.stderr = '';
    this.proc.stderr.on('data', (d) => (this.stderr += d));
    this.ready = new Promise((resolve, reject) => {
      this.proc.once('exit', (code) => reject(new Error(`agent ${name} exited ${code}: ${this.stderr}`)));
      createInterface({ input: this.proc.stdout }).on('line', (line) => {
        const msg = JSON.parse(line);
        if (msg.ready) return resolve();
        if (msg.seq !== undefined) {
          this.pending.get(msg.seq)?.(msg);
          this.pending.delete(msg.seq);
        } else {
          this.events.push({ ...msg, at: Date.now() });
        }
      });
    });
  }

  call(cmd, ms = 15_000) {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent ${this.name}: no answer to ${JSON.stringify(cmd)}`)), ms);
      this.pending.set(seq, (msg) => {
        clearTimeout(timer);
        if (msg.error) reject(new Error(`agent ${this.name}: ${msg.error}`));
        else resolve(msg);
      });
      this.proc.stdin.write(`${JSON.stringify({ ...cmd, seq })}\n`);
    });
  }

  async node() {
    const res = await this.call({ op: 'http', path: '/stats' });
    assert.equal(res.status, 200, JSON.stringify(res));
    return res.body.serverId;
  }

  async token(username) {
    const res = await this.call({ op: 'http', path: `/dev/token?username=${username}` });
    assert.equal(res.status, 200, JSON.stringify(res));
    return res.body.token;
  }

  connect(id, token, opts = {}) {
    return this.call({ op: 'connect', id, token, opts });
  }

  async ask(id, event, ...args) {
    return (await this.call({ op: 'emit', id, event, args, ack: true })).ack[0];
  }

  seen(id, event, pred = () => true, from = 0) {
    return this.events.find((e) => e.at >= from && e.id === id && e.event === event && pred(...e.args));
  }

  stop() {
    this.proc.stdin.end();
  }
}

async function clusterNodes(agent) {
  const res = await agent.call({ op: 'http', path: '/cluster/stats' });
  assert.equal(res.status, 200, JSON.stringify(res));
  return res.body.nodes.map((n) => n.serverId).sort();
}

describe('docker compose cluster through nginx', () => {
  const agents = [];
  after(async () => {
    for (const a of agents) a.stop();
    await run(DOCKER, ['rm', '-f', ...agents.map((a) => `${LABEL}-${a.name}`)]).catch(() => {});
  });

  test('clients from three /24s: chat, rooms, presence, node death, graceful stop, scaling', { timeout: 600_000 }, async (t) => {
    const t0 = Date.now();
    const [a, b, c] = ['a', 'b', 'c'].map((n, i) => new Agent(n, NETWORKS[i]));
    agents.push(a, b, c);
    await Promise.all([a.ready, b.ready, c.ready]);
    const nodes = [await a.node(), await b.node(), await c.node()];
    console.log(`# agents up, on ${nodes.join(', ')} (${since(t0)})`);
    assert.equal(new Set(nodes).size, 3, `ip_hash sends the three /24s to three nodes: ${nodes}`);

    // Tokens from /dev/token (DEV_TOKENS) through nginx; admin tokens are not handed out.
    const admin = await a.call({ op: 'http', path: '/dev/token?username=eve&role=admin' });
    assert.equal(admin.status, 403, JSON.stringify(admin));
    const metrics = await a.call({ op: 'http', path: '/metrics' });
    assert.equal(metrics.status, 404, 'nginx never exposes /metrics');

    await t.test('cross-node chat, rooms and presence', async () => {
      const t1 = Date.now();
      await a.connect('alice', await a.token('alice'));
      await b.connect('bob', await b.token('bob'));
      await c.connect('carol', await c.token('carol'));
      const room = `compose-${process.pid}`;
      assert.deepEqual(await a.ask('alice', 'create room', { roomId: room, roomName: 'Compose' }), { success: true, roomId: room });
      for (const [agent, id] of [[a, 'alice'], [b, 'bob'], [c, 'carol']]) {
        assert.equal((await agent.ask(id, 'join room', { roomId: room })).success, true);
      }
      const online = await b.ask('bob', 'get online users');
      assert.deepEqual(online.users.map((u) => u.id).filter((id) => ['alice', 'bob', 'carol'].includes(id)).sort(), ['alice', 'bob', 'carol']);
      assert.ok(a.seen('alice', 'user online', (p) => p.userId === 'carol'), 'alice saw carol come online (another node)');
      assert.deepEqual(await a.ask('alice', 'room message', { roomId: room, message: 'hello from alice' }), { success: true });
      for (const [agent, id] of [[b, 'bob'], [c, 'carol']]) {
        await waitFor(`${id} gets alice's room message`, 5_000, () => agent.seen(id, 'room message', (m) => m.message === 'hello from alice'));
      }
      console.log(`# chat across three nodes: ${since(t1)}`);
    });

    await t.test('SIGKILL of a node: its clients come back elsewhere, its users and stats go within 10 s', async () => {
      const victim = nodes[2]; // carol's node
      // dave stays on the victim and does not reconnect: his user must go offline.
      await c.connect('dave', await c.token('dave'), { reconnection: false });
      await waitFor('alice sees dave online', 5_000, () => a.seen('alice', 'user online', (p) => p.userId === 'dave'));
      const killedAt = Date.now();
      await compose('kill', '-s', 'KILL', victim);
      await waitFor('carol disconnected', 5_000, () => c.seen('carol', 'disconnect', () => true, killedAt));
      await waitFor('carol reconnected through nginx', 10_000, () => c.seen('carol', 'connect', () => true, killedAt));
      const back = Date.now() - killedAt;
      // A fresh request from the dead node's /24: nginx must not sit on the silent address.
      const asked = Date.now();
      const carolNode = await c.node();
      const answeredIn = Date.now() - asked;
      assert.ok(answeredIn < 3000, `a request from the dead node's /24 took ${answeredIn} ms`);
      assert.notEqual(carolNode, victim);
      await waitFor('user offline for dave', 10_000, () => a.seen('alice', 'user offline', (p) => p.userId === 'dave', killedAt));
      const offline = Date.now() - killedAt;
      await waitFor(`${victim} gone from /cluster/stats`, 10_000 - (Date.now() - killedAt), async () => !(await clusterNodes(a)).includes(victim));
      const gone = Date.now() - killedAt;
      console.log(`# kill ${victim}: carol back on ${carolNode} after ${back} ms, dave offline after ${offline} ms, node out of /cluster/stats after ${gone} ms`);
      assert.ok(offline <= 10_000 && gone <= 10_000);
      const online = await a.ask('alice', 'get online users');
      assert.ok(!online.users.some((u) => u.id === 'dave'), JSON.stringify(online.users));
      assert.ok(online.users.some((u) => u.id === 'carol'), 'carol is online again');
      await compose('up', '-d', '--wait', victim);
    });

    await t.test('graceful stop: clients are told, move, and the node leaves the stats', async () => {
      const victim = nodes[1]; // bob's node
      const stoppedAt = Date.now();
      await compose('stop', victim);
      const stopTook = Date.now() - stoppedAt;
      assert.ok(b.seen('bob', 'server shutdown', (p) => p.serverId === victim, stoppedAt), 'bob got server shutdown');
      await waitFor('bob reconnected', 10_000, () => b.seen('bob', 'connect', () => true, stoppedAt));
      assert.notEqual(await b.node(), victim);
      assert.ok(!(await clusterNodes(a)).includes(victim));
      console.log(`# graceful stop of ${victim}: ${stopTook} ms; bob moved`);
      await compose('up', '-d', '--wait', victim);
    });

    await t.test('recreated containers (new addresses): nginx follows them, quickly and stickily', async () => {
      const t1 = Date.now();
      await compose('up', '-d', '--wait', '--force-recreate', '--no-deps', 'gateway-1', 'gateway-2', 'gateway-3');
      // Each /24 is answered by a live node, at once, and by the same one request after request.
      // (Which node a /24 hashes to may change: re-resolved servers can change places in nginx's list.)
      await waitFor('each /24 answered fast and stickily by a recreated node', 20_000, async () => {
        for (const agent of [a, b, c]) {
          const seen = new Set();
          for (let i = 0; i < 3; i++) {
            const asked = Date.now();
            seen.add(await agent.node());
            if (Date.now() - asked > 1500) return false;
          }
          if (seen.size !== 1) return false;
        }
        return true;
      });
      for (const [agent, id] of [[a, 'alice'], [b, 'bob'], [c, 'carol']]) {
        await waitFor(`${id} reconnected after the recreate`, 15_000, () => agent.seen(id, 'connect', () => true, t1));
      }
      console.log(`# recreated gateway-1..3, every /24 answered stickily and its clients back in ${since(t1)}`);
    });

    await t.test('scale out the pool: new nodes join and take new clients; scale in drains them', async () => {
      const t1 = Date.now();
      await compose(...SCALE_FILES, 'up', '-d', '--wait', '--scale', 'gateway-pool=2');
      const members = await waitFor('two pool nodes in /cluster/stats', 20_000, async () => {
        const ids = await clusterNodes(a);
        return ids.length === 5 ? ids : undefined;
      });
      console.log(`# scaled out to ${members.join(', ')} in ${since(t1)}`);
      // nginx re-resolves the pool every few seconds: new connections reach the new nodes.
      const pool = members.filter((id) => !['gateway-1', 'gateway-2', 'gateway-3'].includes(id));
      const onPool = await waitFor('an agent hashed to a pool node', 20_000, async () => {
        for (const agent of [a, b, c]) {
          if (pool.includes(await agent.node())) return agent;
        }
        return undefined;
      });
      const id = `pool-${onPool.name}`;
      await onPool.connect(id, await onPool.token(id));
      const t2 = Date.now();
      await compose(...SCALE_FILES, 'up', '-d', '--wait', '--scale', 'gateway-pool=0');
      assert.ok(onPool.seen(id, 'server shutdown', () => true, t2), `${id} was told its node drains`);
      await waitFor(`${id} reconnected to a remaining node`, 15_000, () => onPool.seen(id, 'connect', () => true, t2));
      // Right after a scale-in to zero, nginx still holds the removed pool addresses (a name that
      // stops resolving keeps its last addresses), so a request hashed to one may fail once while
      // nginx marks it failed (deploy/README.md, "Scaling with Compose"). What is promised is that
      // the edge settles on the remaining nodes within the resolver interval plus fail_timeout.
      const home = await waitFor(`${id}'s /24 answered by a remaining node`, 20_000, async () => {
        const node = await onPool.node();
        return pool.includes(node) ? undefined : node;
      });
      assert.ok(['gateway-1', 'gateway-2', 'gateway-3'].includes(home), home);
      const after = await clusterNodes(a);
      assert.deepEqual(after, ['gateway-1', 'gateway-2', 'gateway-3']);
      console.log(`# scaled in, ${id} moved, in ${since(t2)}`);
    });
  });
});
