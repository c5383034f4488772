// Attack: get an admin token signed with the production key from `GET /dev/token`.
// Before: `--dev` next to JWT_SECRET started and signed admin dev tokens with JWT_SECRET, so anyone
// reaching the node could mint tokens every node of the cluster accepts.
// Now: `--dev` refuses any real key at start-up; the demo setting DEV_TOKENS signs with the real
// secret but hands out role `user` only, and an admin token minted that way does not exist.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import {
  client,
  closeAll,
  connected,
  connectError,
  http,
  newUser,
  once,
  runGatewayToExit,
  startGateway,
  test,
} from '../e2e/support/gateway.mjs';

const SECRET = 'production-secret-0123456789abcdef';

describe('hostile: dev tokens signed with the production secret', () => {
  for (const [name, env] of [
    ['JWT_SECRET', { JWT_SECRET: SECRET }],
    ['JWT_SECRET_FILE', { JWT_SECRET_FILE: '/nonexistent/jwt-secret' }],
  ]) {
    test(`--dev with ${name} set refuses to start, naming both`, async () => {
      const res = await runGatewayToExit(['--dev', '--port', '0', '--host', '127.0.0.1'], { env });
      assert.equal(res.signal, null, 'the gateway kept running with --dev and a real key');
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /--dev/);
      assert.match(res.stderr, new RegExp(name));
    });
  }

  test('DEV_TOKENS hands out user tokens signed with the secret, never admin ones', async (t) => {
    const gw = await startGateway(t, { secret: SECRET, env: { DEV_TOKENS: 'true' } });
    const admin = await http(gw, '/dev/token?username=mallory&role=admin');
    assert.equal(admin.status, 403, admin.text);
    assert.equal(admin.json?.token, undefined);
    assert.match(admin.json?.error ?? '', /gateway token/);
    const other = await http(gw, '/dev/token?username=mallory&role=moderator');
    assert.equal(other.status, 403, other.text);

    const user = await http(gw, '/dev/token?username=alice');
    assert.equal(user.status, 200, user.text);
    // Signed with the real secret: the node admits it on `/`, and `/admin` refuses it.
    const main = client(gw, { token: user.json.token });
    const welcome = once(main, 'welcome', 10_000);
    try {
      await connected(main);
      assert.equal((await welcome).username, 'alice');
    } finally {
      closeAll(main);
    }
    const err = await connectError(client(gw, { namespace: '/admin', token: user.json.token }));
    assert.equal(err.message, 'Access denied: admin role required');
    // The node keeps serving a well-behaved client.
    const ok = client(gw, { token: gw.token(newUser('after')) });
    try {
      await connected(ok);
    } finally {
      closeAll(ok);
    }
  });

  test('without --dev or DEV_TOKENS, /dev/token is 404', async (t) => {
    const gw = await startGateway(t, { secret: SECRET });
    const res = await http(gw, '/dev/token?username=alice');
    assert.equal(res.status, 404, res.text);
  });
});
