// Attack: use a token before its `nbf` (not before) time. An issuer that mints tokens ahead of
// time (a scheduled session, a token handed out for a later shift) must be able to rely on the
// gateway refusing them until then, on sockets and on the admin HTTP API alike, with the same
// clock-skew leeway as `exp`.
import assert from 'node:assert/strict';
import { claims, signHmac } from '../e2e/support/jwt.mjs';
import { client, closeAll, connectError, connectUser, http, newUser, startGateway, test } from '../e2e/support/gateway.mjs';

const INVALID = 'Authentication error: Invalid token';
const now = () => Math.floor(Date.now() / 1000);

test('a token whose nbf lies in the future is refused on every namespace and on /api', async (t) => {
  const gw = await startGateway(t);
  const early = (extra) => signHmac(claims({ userId: 'u-early', username: 'early', role: 'admin', nbf: now() + 3600, ...extra }), gw.secret);
  for (const namespace of ['/', '/chat', '/game', '/admin']) {
    const err = await connectError(client(gw, { namespace, token: early() }));
    assert.equal(err.message, INVALID, `namespace ${namespace}`);
  }
  const api = await http(gw, '/api/announce', { method: 'POST', token: early(), body: { message: 'too early' } });
  assert.equal(api.status, 401, api.text);

  // A malformed nbf is refused too, not ignored.
  const malformed = signHmac(claims({ userId: 'u-odd', username: 'odd', nbf: 'tomorrow' }), gw.secret);
  assert.equal((await connectError(client(gw, { token: malformed }))).message, INVALID);
});

test('a token whose nbf has passed, or lies within the clock-skew leeway, is admitted', async (t) => {
  const gw = await startGateway(t);
  for (const nbf of [now() - 60, now() + 2]) {
    const user = newUser('nbf');
    // gw.token signs every extra field of the user as a claim.
    const { socket, welcome } = await connectUser(gw, { ...user, nbf });
    try {
      assert.equal(welcome.userId, user.userId);
    } finally {
      closeAll(socket);
    }
  }
});
