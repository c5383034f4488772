// Attack: one IPv6 host rotates through its /64 to get a fresh per-address budget for every
// connection attempt and handshake. A host is normally given a whole /64, so both limiters count
// IPv6 clients by their /64 network. The addresses reach the gateway as a trusted proxy's
// X-Forwarded-For, as behind nginx.
import assert from 'node:assert/strict';
import { client, closeAll, connectError, connected, http, newUser, startGateway, test } from '../e2e/support/gateway.mjs';

const PROXY = ['--trusted-proxies', '127.0.0.1/32'];

test('namespace CONNECTs from one /64 share one budget; another /64 is served', async (t) => {
  // Through the environment, so a build without the handshake limit still runs this test.
  const gw = await startGateway(t, { args: [...PROXY, '--connection-rate-limit', '3'], env: { HANDSHAKE_RATE_LIMIT: '1000' } });
  const from = (addr) => client(gw, { token: gw.token(newUser('v6')), extraHeaders: { 'X-Forwarded-For': addr }, transports: ['websocket'] });
  const admitted = [];
  try {
    for (const host of ['1', '2', 'abcd:1234:5678']) admitted.push(await connected(from(`2001:db8:1:2::${host}`)));
    const err = await connectError(from('2001:db8:1:2:ffff::7'));
    assert.equal(err.message, 'Rate limit exceeded');
    admitted.push(await connected(from('2001:db8:1:3::1')));
  } finally {
    closeAll(admitted);
  }
});

test('Engine.IO handshakes from one /64 share one budget; another /64 is served', async (t) => {
  const gw = await startGateway(t, { args: [...PROXY, '--handshake-rate-limit', '3'] });
  const handshake = (addr) => http(gw, '/socket.io/?EIO=4&transport=polling', { headers: { 'X-Forwarded-For': addr } });
  for (const host of ['1', '2', '3']) assert.equal((await handshake(`2001:db8:9:9::${host}`)).status, 200);
  const refused = await handshake('2001:db8:9:9:1:2:3:4');
  assert.equal(refused.status, 429, refused.text);
  assert.match(refused.json.error, /Too many Socket\.IO handshakes from this address/);
  assert.equal((await handshake('2001:db8:9:a::1')).status, 200);
});
