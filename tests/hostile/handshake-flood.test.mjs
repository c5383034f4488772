// Attack: exhaust a node's memory without a token. Every Engine.IO handshake (a request to the
// Socket.IO path without `sid`) used to create a session that lived until the ping timeout, and
// the per-address limit only ran at the namespace CONNECT: 20,000 polling handshakes over one
// keep-alive connection grew RSS by about 189 MB, with nothing in /metrics.
//
// Now handshakes are limited per client address before a session exists (429 saying why,
// counted), sessions that have not joined a namespace are capped node-wide (503) and closed after
// the connect timeout. The flood comes from 127.0.0.2 over one raw keep-alive connection, with a
// forged X-Forwarded-For that must be ignored (127.0.0.2 is not a trusted proxy); the
// well-behaved client comes through the trusted proxy 127.0.0.1 with its own address.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { client, closeAll, connected, http, newUser, once, startGateway, test, waitFor, T } from '../e2e/support/gateway.mjs';

const FLOOD = 20_000;
const BATCH = 250;

function rssBytes(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB$/m);
  return Number(m[1]) * 1024;
}

/** A metric's value from /metrics text (0 when absent). */
async function metric(gw, name) {
  const { text } = await http(gw, '/metrics');
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

/**
 * One raw HTTP/1.1 keep-alive connection from `localAddress`, sending pipelined requests in
 * batches and parsing every response (Content-Length or chunked).
 */
async function keepAlive(gw, localAddress) {
  const sock = tcpConnect({ host: '127.0.0.1', port: gw.port(), localAddress });
  await new Promise((res, rej) => {
    sock.once('connect', res);
    sock.once('error', rej);
  });
  let buf = Buffer.alloc(0);
  let waiting = null;
  let closed = false;
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    waiting?.();
  });
  sock.on('close', () => {
    closed = true;
    waiting?.();
  });
  sock.on('error', () => {});
  const more = () =>
    new Promise((res, rej) => {
      if (closed) return rej(new Error('the server closed the keep-alive connection'));
      const timer = setTimeout(() => rej(new Error('no response within the deadline')), T);
      waiting = () => {
        clearTimeout(timer);
        waiting = null;
        res();
      };
    });
  async function readResponse() {
    let end;
    while ((end = buf.indexOf('\r\n\r\n')) < 0) await more();
    const head = buf.subarray(0, end).toString('latin1');
    buf = buf.subarray(end + 4);
    const [statusLine, ...lines] = head.split('\r\n');
    const status = Number(statusLine.split(' ')[1]);
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    let body = Buffer.alloc(0);
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      while (buf.length < n) await more();
      body = buf.subarray(0, n);
      buf = buf.subarray(n);
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      for (;;) {
        let lineEnd;
        while ((lineEnd = buf.indexOf('\r\n')) < 0) await more();
        const size = parseInt(buf.subarray(0, lineEnd).toString('latin1'), 16);
        while (buf.length < lineEnd + 2 + size + 2) await more();
        body = Buffer.concat([body, buf.subarray(lineEnd + 2, lineEnd + 2 + size)]);
        buf = buf.subarray(lineEnd + 2 + size + 2);
        if (size === 0) break;
      }
    }
    return { status, headers, body: body.toString('utf8') };
  }
  return {
    /** Sends `requests` (raw request texts) pipelined and returns their responses in order. */
    async exchange(requests) {
      sock.write(requests.join(''));
      const out = [];
      for (let i = 0; i < requests.length; i += 1) out.push(await readResponse());
      return out;
    },
    close: () => sock.destroy(),
  };
}

function handshakeRequest(i) {
  return (
    'GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n' +
    'Host: 127.0.0.1\r\n' +
    `X-Forwarded-For: 198.18.${(i >> 8) & 255}.${i & 255}\r\n` +
    'Connection: keep-alive\r\n\r\n'
  );
}

test('20,000 handshakes from one address cost under 30 MB, are refused with 429 and counted, and others are served meanwhile', { timeout: 300_000 }, async (t) => {
  // CONNECTION_RATE_LIMIT at its default (50 a minute); the handshake budget is twice that.
  const gw = await startGateway(t, { args: ['--connection-rate-limit', '50', '--trusted-proxies', '127.0.0.1/32'], env: { RUST_LOG: 'warn' } });
  const flood = await keepAlive(gw, '127.0.0.2');
  t.after(() => flood.close());
  // Warm up the allocator and the HTTP path before the baseline.
  await flood.exchange([handshakeRequest(0)]);
  await http(gw, '/metrics');
  const before = rssBytes(gw.pid);

  const statuses = new Map();
  let refusal;
  const floodStarted = Date.now();
  const flooding = (async () => {
    for (let sent = 1; sent < FLOOD; sent += BATCH) {
      const batch = Array.from({ length: Math.min(BATCH, FLOOD - sent) }, (_, k) => handshakeRequest(sent + k));
      for (const r of await flood.exchange(batch)) {
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 429) refusal ??= r;
      }
    }
  })();

  // Meanwhile, a client of another address (behind the trusted proxy) connects and is welcomed.
  await waitFor(() => (statuses.get(429) ?? 0) > 500, 60_000, { what: 'the flood to be refused' });
  const user = newUser('bystander');
  const socket = client(gw, { token: gw.token(user), extraHeaders: { 'X-Forwarded-For': '198.51.100.7' } });
  try {
    const welcome = once(socket, 'welcome', T);
    await connected(socket);
    assert.equal((await welcome).userId, user.userId);
    await flooding;
  } finally {
    closeAll(socket);
  }

  const floodMinutes = (Date.now() - floodStarted) / 60_000;
  const grown = rssBytes(gw.pid) - before;
  const refused = statuses.get(429) ?? 0;
  t.diagnostic(`RSS grew by ${(grown / 1048576).toFixed(1)} MB; answers by status: ${JSON.stringify([...statuses])}`);
  assert.ok(refused >= FLOOD - 200, `only ${refused} of ${FLOOD} handshakes were refused: ${JSON.stringify([...statuses])}`);
  assert.ok(grown < 30 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(1)} MB`);
  assert.match(JSON.parse(refusal.body).error, /Too many Socket\.IO handshakes from this address \(at most 100 a minute\): retry in \d+ s/);
  assert.ok(Number(refusal.headers['retry-after']) >= 1, 'Retry-After is set');
  assert.ok((await metric(gw, 'socketio_handshakes_rate_limited_total')) >= refused);
  // Sessions were created only within the budget: 100 at once, then 100 a minute.
  const accepted = statuses.get(200) ?? 0;
  assert.ok(accepted <= 100 + Math.ceil(100 * floodMinutes), `${accepted} handshakes accepted in ${floodMinutes.toFixed(2)} min`);
  assert.ok((await metric(gw, 'socketio_sessions_pending')) <= accepted + 1, 'only the admitted sessions (and the warm-up one) are pending');
});

test('sessions that never join a namespace are capped node-wide (503) and closed after the connect timeout', async (t) => {
  const gw = await startGateway(t, { env: { MAX_PENDING_SESSIONS: '10', CONNECT_TIMEOUT_MS: '1500' } });
  const base = `${gw.url}/socket.io/?EIO=4&transport=polling`;
  const sids = [];
  for (let i = 0; i < 10; i += 1) {
    const r = await fetch(base, { signal: AbortSignal.timeout(T) });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    sids.push(JSON.parse(text.slice(1)).sid);
  }
  const over = await http(gw, '/socket.io/?EIO=4&transport=polling');
  assert.equal(over.status, 503);
  assert.match(over.json.error, /Too many sessions are waiting to join a namespace on this node \(at most 10\)/);
  assert.equal(await metric(gw, 'socketio_sessions_pending'), 10);
  assert.equal(await metric(gw, 'socketio_handshakes_over_pending_cap_total'), 1);

  // The connect timeout closes them: the slots come back and the sessions are gone.
  await waitFor(async () => (await metric(gw, 'socketio_sessions_pending')) === 0, T, { what: 'pending sessions to time out' });
  assert.ok((await metric(gw, 'socketio_sessions_abandoned_total')) >= 10);
  const stale = await fetch(`${base}&sid=${encodeURIComponent(sids[0])}`, { signal: AbortSignal.timeout(T) });
  assert.equal(stale.status, 400, 'the timed-out session is closed');

  // A session that joins a namespace stops counting as pending, and is not closed by the timer.
  const user = newUser('joined');
  const socket = client(gw, { token: gw.token(user) });
  try {
    await connected(socket);
    await waitFor(async () => (await metric(gw, 'socketio_sessions_pending')) === 0, T, { what: 'the joined session to leave the pending count' });
    // A session opened after the client joined times out: the client's own timer is past too.
    const abandoned = await metric(gw, 'socketio_sessions_abandoned_total');
    assert.equal((await fetch(base, { signal: AbortSignal.timeout(T) })).status, 200);
    await waitFor(async () => (await metric(gw, 'socketio_sessions_abandoned_total')) > abandoned, T, { what: 'a later session to time out' });
    assert.ok(socket.connected, 'a joined session outlives the connect timeout');
  } finally {
    closeAll(socket);
  }
});
