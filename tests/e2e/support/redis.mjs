// A real redis-server on a free port, and a tiny RESP2 client (commands and pub/sub) so the tests
// need no Redis package. A missing redis-server is a failure saying what to install.
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { freePort, waitFor } from './gateway.mjs';

/** Pids of the redis-server processes still running, SIGKILLed when the test process exits. */
export const live = new Set();
process.on('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

/** Starts redis-server (no persistence, plus `args`) and registers `t.after` to kill it. */
export async function startRedis(t, { port: wanted, args = [] } = {}) {
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    throw new Error('redis-server is not installed: apt-get install -y redis-server');
  }
  const port = wanted ?? (await freePort());
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child.pid);
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((r) => child.once('exit', () => (live.delete(child.pid), r())));
  const stop = async () => {
    if (live.has(child.pid)) {
      process.kill(child.pid, 'SIGKILL');
      await exited;
    }
  };
  t?.after(stop);
  const url = `redis://127.0.0.1:${port}`;
  await waitFor(async () => {
    const c = await RespClient.connect(port).catch(() => null);
    if (!c) return false;
    const pong = await c.command('PING');
    c.close();
    return pong === 'PONG';
  }, 10_000, { what: `redis-server on ${port}; log: ${log}` });
  return { port, url, stop, log: () => log };
}

/** Minimal RESP2 client: one connection, commands answered in order, pub/sub pushes to a callback. */
export class RespClient {
  static connect(port) {
    return new Promise((res, rej) => {
      const sock = connect({ host: '127.0.0.1', port }, () => res(new RespClient(sock)));
      sock.once('error', rej);
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.pending = [];
    this.onMessage = null;
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
    sock.on('error', () => {});
  }

  command(...args) {
    const parts = [`*${args.length}\r\n`];
    for (const a of args) {
      const s = Buffer.from(String(a));
      parts.push(`$${s.length}\r\n`, s, '\r\n');
    }
    return new Promise((res, rej) => {
      this.pending.push({ res, rej });
      for (const p of parts) this.sock.write(p);
    });
  }

  /** Subscribes; every `message` push calls `onMessage(channel, payload)`. */
  async subscribe(channel, onMessage) {
    this.onMessage = onMessage;
    return this.command('SUBSCRIBE', channel);
  }

  close() {
    this.sock.destroy();
  }

  drain() {
    for (;;) {
      const parsed = parse(this.buf, 0);
      if (!parsed) return;
      this.buf = this.buf.subarray(parsed.end);
      const v = parsed.value;
      if (Array.isArray(v) && v[0] === 'message' && this.onMessage) {
        this.onMessage(v[1], v[2]);
        continue;
      }
      const p = this.pending.shift();
      if (!p) continue;
      if (v instanceof Error) p.rej(v);
      else p.res(v);
    }
  }
}

function parse(buf, at) {
  const nl = buf.indexOf('\r\n', at);
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[at]);
  const line = buf.toString('utf8', at + 1, nl);
  const next = nl + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return null;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const out = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const item = parse(buf, pos);
        if (!item) return null;
        out.push(item.value);
        pos = item.end;
      }
      return { value: out, end: pos };
    }
    default:
      throw new Error(`unexpected RESP type ${type}`);
  }
}
