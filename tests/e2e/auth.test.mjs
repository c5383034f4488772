// docs/protocol.md, sections "Namespaces and events" (authentication) and "Errors": authentication and admission, on every namespace and both transports.
import assert from 'node:assert/strict';
import * as nodeCrypto from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import {
  TRANSPORTS, client, closeAll, connectError, connectUser, connected, http, newUser, once,
  runGatewayToExit, startGateway, suiteGateway, test, waitFor, T,
} from './support/gateway.mjs';
import {
  asymmetricKey, badSignatureToken, claims, expiredToken, rs256Token, signHmac, unsignedToken,
  userToken, wrongHmacAlgorithmToken,
} from './support/jwt.mjs';

const NAMESPACES = ['/', '/chat', '/game', '/admin'];
const INVALID = 'Authentication error: Invalid token';

describe('section 2: token checks', () => {
  const gw = suiteGateway();

  for (const { name: tname, opts: transport } of TRANSPORTS) {
    test(`[${tname}] a valid HS256 token in handshake.auth.token is admitted and welcomed as its user`, async () => {
      const user = newUser('auth');
      const { socket, welcome } = await connectUser(gw(), user, { transport });
      try {
        assert.equal(welcome.userId, user.userId);
        assert.equal(welcome.username, user.username);
      } finally {
        closeAll(socket);
      }
    });

    test(`[${tname}] a token in the Authorization: Bearer header is admitted`, async () => {
      const user = newUser('bearer');
      const socket = client(gw(), {
        transport,
        extraHeaders: { Authorization: `Bearer ${gw().token(user)}` },
      });
      const welcome = once(socket, 'welcome', 10_000);
      try {
        await connected(socket);
        assert.equal((await welcome).userId, user.userId);
      } finally {
        closeAll(socket);
      }
    });

    for (const ns of NAMESPACES) {
      test(`[${tname}] ${ns}: no token is refused with "Authentication error: No token provided"`, async () => {
        const err = await connectError(client(gw(), { namespace: ns, transport }));
        assert.equal(err.message, 'Authentication error: No token provided');
      });

      test(`[${tname}] ${ns}: a token with a bad signature is refused as invalid`, async () => {
        const token = badSignatureToken(claims({ userId: 'u-bad', username: 'bad', role: 'admin' }));
        const err = await connectError(client(gw(), { namespace: ns, token, transport }));
        assert.equal(err.message, INVALID);
      });
    }
  }

  const hostile = {
    'alg none': () => unsignedToken(claims({ userId: 'u-none', username: 'none', role: 'admin' })),
    'alg none with the right signature slot filled': () => {
      const t = userToken(gw().secret, { userId: 'u-none2', username: 'none2', role: 'admin' });
      const [, body, sig] = t.split('.');
      return `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${body}.${sig}`;
    },
    'HS512 (not the configured algorithm), right secret': () =>
      wrongHmacAlgorithmToken(claims({ userId: 'u-512', username: 'h512', role: 'admin' }), gw().secret),
    'RS256 (not the configured algorithm)': () => rs256Token(claims({ userId: 'u-rs', username: 'rs', role: 'admin' })),
    'expired ten minutes ago': () => expiredToken({ userId: 'u-exp', username: 'exp', role: 'admin' }, gw().secret),
    'malformed (not a JWT)': () => 'not-a-jwt',
    'malformed (three garbage parts)': () => 'aaa.bbb.ccc',
    'malformed payload (signed non-JSON)': () => {
      const head = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
      const body = Buffer.from('this is not json').toString('base64url');
      const { createHmac } = nodeCrypto;
      const mac = createHmac('sha256', gw().secret).update(`${head}.${body}`).digest('base64url');
      return `${head}.${body}.${mac}`;
    },
  };
  for (const [label, make] of Object.entries(hostile)) {
    for (const ns of ['/', '/admin']) {
      test(`${ns}: token ${label} is refused with "${INVALID}"`, async () => {
        const err = await connectError(client(gw(), { namespace: ns, token: make(), transport: { transports: ['websocket'] } }));
        assert.equal(err.message, INVALID);
      });
    }
  }

  test('a bad token in the Bearer header is refused as invalid', async () => {
    const err = await connectError(
      client(gw(), { extraHeaders: { Authorization: `Bearer ${badSignatureToken(claims({ userId: 'x' }))}` } }),
    );
    assert.equal(err.message, INVALID);
  });

  test('userId falls back to the sub claim', async () => {
    const token = signHmac(claims({ sub: 'sub-only-user', username: 'subby' }), gw().secret);
    const socket = client(gw(), { token });
    const welcome = once(socket, 'welcome', 10_000);
    try {
      await connected(socket);
      assert.equal((await welcome).userId, 'sub-only-user');
      assert.equal((await welcome).username, 'subby');
    } finally {
      closeAll(socket);
    }
  });

  for (const { name: tname, opts: transport } of TRANSPORTS) {
    test(`[${tname}] /admin refuses role user with "Access denied: admin role required"`, async () => {
      const err = await connectError(
        client(gw(), { namespace: '/admin', token: gw().token(newUser('plain', { role: 'user' })), transport }),
      );
      assert.equal(err.message, 'Access denied: admin role required');
    });
  }

  test('/admin refuses a token without a role claim (role defaults to user)', async () => {
    const err = await connectError(client(gw(), { namespace: '/admin', token: gw().token(newUser('norole')) }));
    assert.equal(err.message, 'Access denied: admin role required');
  });

  test('/admin admits role admin; /, /chat and /game admit role user', async () => {
    const admin = await connectUser(gw(), newUser('adm', { role: 'admin' }), { namespace: '/admin' });
    const sockets = [admin.socket];
    try {
      for (const ns of ['/', '/chat', '/game']) {
        sockets.push((await connectUser(gw(), newUser('ns', { role: 'user' }), { namespace: ns })).socket);
      }
    } finally {
      closeAll(sockets);
    }
  });

  test('without --dev, GET /dev/token does not hand out tokens', async () => {
    const res = await http(gw(), '/dev/token?username=alice&role=admin');
    assert.notEqual(res.status, 200, `got 200 with body ${res.text}`);
    assert.ok(!res.json?.token, 'a token was returned without --dev');
  });
});

describe('section 2: connection rate limit per client address', () => {
  for (const { name: tname, opts: transport } of [...TRANSPORTS, { name: 'polling', opts: { transports: ['polling'] } }]) {
    test(`[${tname}] the attempt after the limit is refused with "Rate limit exceeded"`, async (t) => {
      const gw = await startGateway(t, { rateLimit: 3 });
      const sockets = [];
      try {
        for (let i = 0; i < 3; i++) {
          sockets.push((await connectUser(gw, newUser('rl'), { transport })).socket);
        }
        const err = await connectError(client(gw, { token: gw.token(newUser('rl')), ...transport }));
        assert.equal(err.message, 'Rate limit exceeded');
      } finally {
        closeAll(sockets);
      }
    });
  }

  test('forwarding headers from an untrusted peer are ignored (same bucket)', async (t) => {
    const gw = await startGateway(t, { rateLimit: 2 });
    const sockets = [];
    try {
      for (const ip of ['203.0.113.1', '203.0.113.2']) {
        sockets.push(
          (await connectUser(gw, newUser('ut'), { transport: { transports: ['websocket'] }, extraHeaders: { 'X-Real-IP': ip, 'X-Forwarded-For': ip } }))
            .socket,
        );
      }
      const err = await connectError(
        client(gw, { token: gw.token(newUser('ut')), transports: ['websocket'], extraHeaders: { 'X-Real-IP': '203.0.113.3', 'X-Forwarded-For': '203.0.113.3' } }),
      );
      assert.equal(err.message, 'Rate limit exceeded');
    } finally {
      closeAll(sockets);
    }
  });

  test('behind a trusted proxy, X-Real-IP is the client address (separate buckets)', async (t) => {
    const gw = await startGateway(t, { rateLimit: 2, args: ['--trusted-proxies', '127.0.0.1'] });
    const sockets = [];
    const ws = { transports: ['websocket'] };
    try {
      for (let i = 0; i < 2; i++) {
        sockets.push((await connectUser(gw, newUser('tp'), { transport: ws, extraHeaders: { 'X-Real-IP': '203.0.113.10' } })).socket);
      }
      const err = await connectError(client(gw, { token: gw.token(newUser('tp')), ...ws, extraHeaders: { 'X-Real-IP': '203.0.113.10' } }));
      assert.equal(err.message, 'Rate limit exceeded');
      sockets.push((await connectUser(gw, newUser('tp'), { transport: ws, extraHeaders: { 'X-Real-IP': '203.0.113.11' } })).socket);
    } finally {
      closeAll(sockets);
    }
  });

  test('behind a trusted proxy, the right-most X-Forwarded-For entry is the client address', async (t) => {
    const gw = await startGateway(t, { rateLimit: 2, args: ['--trusted-proxies', '127.0.0.0/8'] });
    const sockets = [];
    const ws = { transports: ['websocket'] };
    try {
      // The left entries are client-controlled: varying them must not give a new bucket.
      for (const left of ['198.51.100.1', '198.51.100.2']) {
        sockets.push(
          (await connectUser(gw, newUser('xff'), { transport: ws, extraHeaders: { 'X-Forwarded-For': `${left}, 203.0.113.20` } })).socket,
        );
      }
      const err = await connectError(
        client(gw, { token: gw.token(newUser('xff')), ...ws, extraHeaders: { 'X-Forwarded-For': '198.51.100.3, 203.0.113.20' } }),
      );
      assert.equal(err.message, 'Rate limit exceeded');
      sockets.push(
        (await connectUser(gw, newUser('xff'), { transport: ws, extraHeaders: { 'X-Forwarded-For': '203.0.113.20, 203.0.113.21' } })).socket,
      );
    } finally {
      closeAll(sockets);
    }
  });
});

describe('section 2: dev mode and key configuration', () => {
  test('--dev serves GET /dev/token whose token is admitted, admin role included', async (t) => {
    const gw = await startGateway(t, { noSecret: true, args: ['--dev'] });
    const res = await http(gw, '/dev/token?username=alice&role=admin');
    assert.equal(res.status, 200, res.text);
    assert.equal(typeof res.json?.token, 'string');
    const socket = client(gw, { namespace: '/admin', token: res.json.token });
    try {
      await connected(socket);
    } finally {
      closeAll(socket);
    }
    const withId = await http(gw, '/dev/token?username=carol&userId=carol-42');
    assert.equal(withId.status, 200, withId.text);
    const carol = client(gw, { token: withId.json.token });
    const carolWelcome = once(carol, 'welcome', 10_000);
    try {
      await connected(carol);
      assert.equal((await carolWelcome).userId, 'carol-42');
    } finally {
      closeAll(carol);
    }
    const plain = await http(gw, '/dev/token?username=bob');
    assert.equal(plain.status, 200, plain.text);
    const main = client(gw, { token: plain.json.token });
    const welcome = once(main, 'welcome', 10_000);
    try {
      await connected(main);
      assert.equal((await welcome).username, 'bob');
    } finally {
      closeAll(main);
    }
  });

  test('--dev accepts tokens signed with the documented dev secret', async (t) => {
    const gw = await startGateway(t, { noSecret: true, args: ['--dev'] });
    const token = userToken('dev-secret-do-not-use-in-production', newUser('devsecret'));
    const socket = client(gw, { token });
    try {
      await connected(socket);
    } finally {
      closeAll(socket);
    }
  });

  test('JWT_SECRET from the environment is the HS256 key', async (t) => {
    const secret = 'env-secret-for-e2e-0123456789abcdef';
    const gw = await startGateway(t, { noSecret: true, env: { JWT_SECRET: secret } });
    const good = client(gw, { token: userToken(secret, newUser('envsecret')) });
    try {
      await connected(good);
    } finally {
      closeAll(good);
    }
    const err = await connectError(client(gw, { token: userToken('another-secret', newUser('envsecret')) }));
    assert.equal(err.message, INVALID);
  });

  test('without a key and without --dev the gateway exits non-zero naming JWT_SECRET', async () => {
    const env = { JWT_SECRET: '', JWT_PUBLIC_KEY_FILE: '', DEV_MODE: '' };
    for (const k of Object.keys(env)) delete process.env[k];
    const res = await runGatewayToExit(['--port', '0', '--host', '127.0.0.1'], { timeoutMs: 15_000 });
    assert.equal(res.signal, null, 'the gateway kept running without a key and had to be killed');
    assert.notEqual(res.code, 0);
    assert.match(res.stderr + res.stdout, /JWT_SECRET/);
  });

  test('`gateway token` prints a JWT the gateway admits (same --jwt-secret)', async (t) => {
    const gw = await startGateway(t);
    const res = await runGatewayToExit(['token', '--user-id', 'cli-user', '--username', 'cli', '--jwt-secret', gw.secret]);
    assert.equal(res.code, 0, res.stderr);
    const token = res.stdout.trim().split(/\s+/).pop();
    const socket = client(gw, { token });
    const welcome = once(socket, 'welcome', 10_000);
    try {
      await connected(socket);
      assert.equal((await welcome).userId, 'cli-user');
    } finally {
      closeAll(socket);
    }
  });
});

describe('section 2: bans refuse new connections', () => {
  const gw = suiteGateway();
  test('a banned user is refused on every namespace with "Banned: <reason>"; unban lifts it', async () => {
    const admin = await connectUser(gw(), newUser('banadm', { role: 'admin' }), { namespace: '/admin' });
    const victim = newUser('banned', { role: 'admin' });
    try {
      admin.socket.emit('ban user', { userId: victim.userId, reason: 'e2e ban' });
      await waitFor(async () => {
        const err = await connectError(client(gw(), { token: gw().token(victim) })).catch(() => null);
        return err?.message === 'Banned: e2e ban';
      }, T, { what: 'the ban to refuse new connections' });
      for (const ns of NAMESPACES) {
        const err = await connectError(client(gw(), { namespace: ns, token: gw().token(victim) }));
        assert.equal(err.message, 'Banned: e2e ban', `namespace ${ns}`);
      }
      admin.socket.emit('unban user', victim.userId);
      await waitFor(async () => {
        const s = client(gw(), { token: gw().token(victim) });
        try {
          await connected(s);
          return true;
        } finally {
          closeAll(s);
        }
      }, T, { what: 'unban to admit the user again' });
    } finally {
      closeAll(admin.socket);
    }
  });
});

describe('section 2: public-key verification (RS256 / ES256)', () => {
  for (const alg of ['RS256', 'ES256']) {
    test(`${alg}: tokens signed by the key are admitted; other keys, HS256 with the public key as secret, and alg none are not`, async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'gw-jwt-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const key = asymmetricKey(alg);
      const keyFile = join(dir, 'public.pem');
      writeFileSync(keyFile, key.publicPem);
      const gw = await startGateway(t, { noSecret: true, args: ['--jwt-public-key-file', keyFile, '--jwt-algorithm', alg] });
      const user = newUser(`pk${alg}`);
      const good = client(gw, { token: key.sign(claims(user)) });
      const welcome = once(good, 'welcome', 10_000);
      try {
        await connected(good);
        assert.equal((await welcome).userId, user.userId);
      } finally {
        closeAll(good);
      }
      const attacks = {
        'signed by another key': asymmetricKey(alg).sign(claims(user)),
        'HS256 keyed with the public key PEM (algorithm confusion)': signHmac(claims(user), key.publicPem),
        'alg none': unsignedToken(claims(user)),
        'expired': key.sign({ ...user, iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 600 }),
      };
      for (const [label, token] of Object.entries(attacks)) {
        const err = await connectError(client(gw, { token }));
        assert.equal(err.message, INVALID, label);
      }
    });
  }
});
