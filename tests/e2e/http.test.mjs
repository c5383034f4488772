// docs/protocol.md, section "HTTP routes": HTTP routes, admin APIs, static files and the CORS rule.
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe } from 'node:test';
import {
  RFC3339, freePort, runGatewayToExit, client, closeAll, connectError, connectUser, connected, http,
  newUser, once, startGateway, suiteGateway, test, waitFor, T,
} from './support/gateway.mjs';
import { badSignatureToken, claims } from './support/jwt.mjs';

/** Reads one sample value of a Prometheus metric (sum over its label sets), or undefined. */
function metricValue(text, name) {
  let total;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m && m[1] === name) total = (total ?? 0) + Number(m[3]);
  }
  return total;
}

const REQUIRED_METRICS = [
  'socketio_connections_total',
  'socketio_connections_active',
  'socketio_messages_sent_total',
  'socketio_messages_received_total',
  'socketio_message_rate',
  'socketio_rooms_total',
  'socketio_connection_errors_total',
  'socketio_message_errors_total',
  'socketio_auth_errors_total',
];

describe('section 7: health, readiness, metrics, stats', () => {
  const gw = suiteGateway({ serverId: 'http-node-1' });

  test('GET /health: { status, issues, metrics, timestamp }, 200 unless unhealthy', async () => {
    const res = await http(gw(), '/health');
    assert.ok(res.json, `not JSON: ${res.text}`);
    assert.ok(['healthy', 'warning', 'unhealthy'].includes(res.json.status), res.text);
    assert.equal(res.status, res.json.status === 'unhealthy' ? 503 : 200);
    // An idle node that just started has no reason to be unhealthy.
    assert.notEqual(res.json.status, 'unhealthy', res.text);
    assert.ok(Array.isArray(res.json.issues), res.text);
    assert.equal(typeof res.json.metrics, 'object');
    assert.ok(res.json.metrics !== null);
    assert.match(res.json.timestamp, RFC3339);
  });

  test('GET /ready: 200 when accepting traffic', async () => {
    assert.equal((await http(gw(), '/ready')).status, 200);
  });

  test('GET /metrics: Prometheus text with every required family, and the counters move', async () => {
    const first = await http(gw(), '/metrics');
    assert.equal(first.status, 200);
    assert.match(first.headers.get('content-type') ?? '', /^text\/plain/);
    for (const name of REQUIRED_METRICS) {
      assert.notEqual(metricValue(first.text, name), undefined, `metric ${name} missing from /metrics`);
    }
    const before = (n) => metricValue(first.text, n);
    const a = await connectUser(gw(), newUser('m1'));
    const b = await connectUser(gw(), newUser('m2'));
    try {
      const got = once(b.socket, 'chat message', T);
      await a.socket.timeout(T).emitWithAck('chat message', { content: 'count me' });
      await got;
      await connectError(client(gw(), { token: badSignatureToken(claims({ userId: 'x' })) }));
      await waitFor(async () => {
        const now = (await http(gw(), '/metrics')).text;
        return (
          metricValue(now, 'socketio_connections_total') >= before('socketio_connections_total') + 2 &&
          metricValue(now, 'socketio_connections_active') >= 2 &&
          metricValue(now, 'socketio_messages_received_total') >= before('socketio_messages_received_total') + 1 &&
          metricValue(now, 'socketio_messages_sent_total') >= before('socketio_messages_sent_total') + 1 &&
          metricValue(now, 'socketio_auth_errors_total') >= before('socketio_auth_errors_total') + 1
        );
      }, T, { what: 'connections, messages and auth errors to be counted' });
      const active = metricValue((await http(gw(), '/metrics')).text, 'socketio_connections_active');
      closeAll(a.socket, b.socket);
      await waitFor(
        async () => metricValue((await http(gw(), '/metrics')).text, 'socketio_connections_active') <= active - 2,
        T,
        { what: 'socketio_connections_active to drop by 2 after disconnects' },
      );
    } finally {
      closeAll(a.socket, b.socket);
    }
  });

  test('GET /stats: this node as JSON with serverId', async () => {
    const res = await http(gw(), '/stats');
    assert.equal(res.status, 200);
    assert.equal(res.json?.serverId, 'http-node-1', res.text);
  });

  test('GET /cluster/stats: { nodes: [...each with serverId], totals } including this node', async () => {
    const res = await http(gw(), '/cluster/stats');
    assert.equal(res.status, 200, res.text);
    assert.ok(Array.isArray(res.json?.nodes), res.text);
    assert.ok(res.json.nodes.every((n) => typeof n.serverId === 'string'), res.text);
    assert.ok(res.json.nodes.some((n) => n.serverId === 'http-node-1'), res.text);
    assert.equal(typeof res.json.totals, 'object');
    assert.ok(res.json.totals !== null);
  });
});

describe('section 7: admin HTTP APIs', () => {
  const gw = suiteGateway();
  const adminToken = () => gw().token(newUser('api-admin', { role: 'admin' }));
  const userToken = () => gw().token(newUser('api-user', { role: 'user' }));

  for (const route of ['/api/announce', '/api/ban', '/api/emit']) {
    test(`POST ${route}: 401 without or with a bad token, 403 for a non-admin`, async () => {
      const body = { message: 'x', userId: 'nobody', event: 'x', data: {} };
      assert.equal((await http(gw(), route, { method: 'POST', body })).status, 401);
      assert.equal((await http(gw(), route, { method: 'POST', body, token: badSignatureToken(claims({ role: 'admin', userId: 'a' })) })).status, 401);
      assert.equal((await http(gw(), route, { method: 'POST', body, token: 'garbage' })).status, 401);
      assert.equal((await http(gw(), route, { method: 'POST', body, token: userToken() })).status, 403);
    });
  }

  test('POST /api/announce { message }: every / socket gets system message', async () => {
    const a = await connectUser(gw(), newUser('ann'));
    try {
      const got = once(a.socket, 'system message', T);
      const res = await http(gw(), '/api/announce', { method: 'POST', token: adminToken(), body: { message: 'from the backend' } });
      assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.text}`);
      const m = await got;
      assert.equal(m.content, 'from the backend');
      assert.equal(m.type, 'announcement');
      assert.equal(m.from, 'system');
    } finally {
      closeAll(a.socket);
    }
  });

  test('POST /api/ban { userId, reason }: the user is banned and disconnected; new connections refused', async () => {
    const user = newUser('apiban');
    const a = await connectUser(gw(), user);
    try {
      const banned = once(a.socket, 'banned', T);
      const gone = once(a.socket, 'disconnect', T);
      const res = await http(gw(), '/api/ban', { method: 'POST', token: adminToken(), body: { userId: user.userId, reason: 'api says no' } });
      assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.text}`);
      assert.deepEqual(await banned, { reason: 'api says no' });
      await gone;
      const err = await connectError(client(gw(), { token: gw().token(user) }));
      assert.equal(err.message, 'Banned: api says no');
    } finally {
      closeAll(a.socket);
    }
  });

  test('POST /api/emit { namespace, room, event, data }: to a namespace, to a room, default namespace /', async () => {
    const mainUser = newUser('emitMain');
    const m = await connectUser(gw(), mainUser);
    const c1 = await connectUser(gw(), newUser('emitChat1'), { namespace: '/chat' });
    const c2 = await connectUser(gw(), newUser('emitChat2'), { namespace: '/chat' });
    try {
      const toChat = [once(c1.socket, 'backend event', T), once(c2.socket, 'backend event', T)];
      let res = await http(gw(), '/api/emit', { method: 'POST', token: adminToken(), body: { namespace: '/chat', event: 'backend event', data: { a: 1 } } });
      assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.text}`);
      for (const d of await Promise.all(toChat)) assert.deepEqual(d, { a: 1 });

      const toRoom = once(m.socket, 'backend event', T);
      res = await http(gw(), '/api/emit', { method: 'POST', token: adminToken(), body: { room: `user:${mainUser.userId}`, event: 'backend event', data: 'to a room' } });
      assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.text}`);
      assert.equal(await toRoom, 'to a room');

      const toMain = once(m.socket, 'plain event', T);
      res = await http(gw(), '/api/emit', { method: 'POST', token: adminToken(), body: { event: 'plain event', data: [1, 2, 3] } });
      assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.text}`);
      assert.deepEqual(await toMain, [1, 2, 3]);
    } finally {
      closeAll(m.socket, c1.socket, c2.socket);
    }
  });

  // docs/protocol.md, section "HTTP routes": an invalid body is 400 Bad Request with { error }.
  test('POST /api/* with a body missing its required field, or not JSON, is refused with 400', async () => {
    const cases = [
      ['/api/emit', { data: 1 }],
      ['/api/announce', {}],
      ['/api/ban', { reason: 'no user given' }],
      ['/api/announce', '{not json'],
    ];
    for (const [route, body] of cases) {
      const res = await http(gw(), route, { method: 'POST', token: adminToken(), body, headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 400, `${route} ${JSON.stringify(body)} answered ${res.status} ${res.text}`);
    }
  });
});

describe('section 7: static files', () => {
  const root = mkdtempSync(join(tmpdir(), 'gw-static-'));
  const web = join(root, 'www');
  mkdirSync(join(web, 'sub'), { recursive: true });
  writeFileSync(join(web, 'index.html'), '<!doctype html><title>e2e index</title><p>E2E-INDEX-MARKER</p>');
  writeFileSync(join(web, 'sub', 'app.js'), 'console.log("E2E-JS-MARKER");');
  writeFileSync(join(root, 'secret.txt'), 'E2E-SECRET-OUTSIDE-WEB-ROOT');
  after(() => rmSync(root, { recursive: true, force: true }));
  const gw = suiteGateway({ args: ['--static-dir', web] });

  test('GET / serves index.html; files below the web root are served; a missing file is 404', async () => {
    const index = await http(gw(), '/');
    assert.equal(index.status, 200);
    assert.match(index.text, /E2E-INDEX-MARKER/);
    assert.match(index.headers.get('content-type') ?? '', /text\/html/);
    const js = await http(gw(), '/sub/app.js');
    assert.equal(js.status, 200);
    assert.match(js.text, /E2E-JS-MARKER/);
    assert.equal((await http(gw(), '/no-such-file.html')).status, 404);
  });

  /** Sends the path bytes as given (no client-side normalisation). */
  function rawGet(path) {
    const { hostname, port } = new URL(gw().url);
    return new Promise((res, rej) => {
      const req = request({ host: hostname, port, path, method: 'GET' }, (r) => {
        let body = '';
        r.setEncoding('utf8');
        r.on('data', (d) => (body += d));
        r.on('end', () => res({ status: r.statusCode, body }));
      });
      req.setTimeout(T, () => req.destroy(new Error('timeout')));
      req.on('error', rej);
      req.end();
    });
  }

  for (const path of ['/../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/%2e%2e%2fsecret.txt', '/sub/../../secret.txt', '/sub/%2e%2e/%2e%2e/secret.txt', '/..%5csecret.txt', `/${'..%2f'.repeat(8)}etc/passwd`]) {
    test(`nothing outside the web root is served: ${path}`, async () => {
      const res = await rawGet(path);
      assert.ok(!res.body.includes('E2E-SECRET-OUTSIDE-WEB-ROOT'), `${path} served the file outside the web root`);
      assert.ok(!/root:.*:0:0:/.test(res.body), `${path} served /etc/passwd`);
      assert.notEqual(res.status, 200, `${path} answered 200`);
    });
  }
});

describe('section 1: CORS allow-list', () => {
  const gw = suiteGateway({ args: ['--allowed-origins', 'http://allowed.example,http://localhost:3000'] });

  test('an allowed origin gets Access-Control-Allow-Origin and credentials; another origin does not', async () => {
    const url = '/socket.io/?EIO=4&transport=polling';
    const ok = await http(gw(), url, { method: 'OPTIONS', headers: { origin: 'http://allowed.example', 'access-control-request-method': 'POST' } });
    assert.equal(ok.headers.get('access-control-allow-origin'), 'http://allowed.example');
    assert.equal(ok.headers.get('access-control-allow-credentials'), 'true');
    const bad = await http(gw(), url, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } });
    const acao = bad.headers.get('access-control-allow-origin');
    assert.ok(acao !== 'http://evil.example' && acao !== '*', `a disallowed origin was allowed: ${acao}`);
  });

  test('a handshake from an allowed origin works end to end', async () => {
    const s = client(gw(), { token: gw().token(newUser('cors')), extraHeaders: { origin: 'http://allowed.example' } });
    try {
      await connected(s);
    } finally {
      closeAll(s);
    }
  });
});


describe('section 1: Engine.IO v3 (socket.io-client 2.x) only behind --allow-eio3', () => {
  test('EIO=3 handshakes are refused by default and accepted with --allow-eio3', async (t) => {
    const off = await startGateway(t);
    const refused = await http(off, '/socket.io/?EIO=3&transport=polling');
    assert.equal(refused.status, 400, `EIO=3 without the flag answered ${refused.status} ${refused.text}`);
    const on = await startGateway(t, { args: ['--allow-eio3'] });
    const accepted = await http(on, '/socket.io/?EIO=3&transport=polling');
    assert.equal(accepted.status, 200, accepted.text);
    // v3 polling payloads are length-prefixed: `<len>:0{...open packet...}`.
    assert.match(accepted.text, /^\d+:0\{.*"sid"/, accepted.text);
  });
});

describe('gateway healthcheck subcommand (container HEALTHCHECK)', () => {
  test('exits 0 when the URL answers 200 and 1 when nothing listens', async (t) => {
    const gw = await startGateway(t);
    const up = await runGatewayToExit(['healthcheck', '--url', `${gw.url}/ready`]);
    assert.equal(up.code, 0, up.stderr);
    const deadPort = await freePort();
    const down = await runGatewayToExit(['healthcheck', '--url', `http://127.0.0.1:${deadPort}/ready`]);
    assert.equal(down.code, 1, down.stderr);
    const missing = await runGatewayToExit(['healthcheck', '--url', `${gw.url}/no-such-page`]);
    assert.equal(missing.code, 1, `a 404 counted as healthy: ${missing.stderr}`);
  });
});
