// docs/protocol.md, section "Namespaces and events" (transport): the node serves the socket.io client bundle at /socket.io/socket.io.js
// (and .min.js), as Node's socket.io does, so pages need no CDN. The bundle comes from the npm
// package socket.io-client, installed by `npm ci --prefix gateway/client-bundle`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe } from 'node:test';
import { REPO_ROOT, http, startGateway, test } from './support/gateway.mjs';

const INSTALLED = join(REPO_ROOT, 'gateway', 'client-bundle', 'node_modules', 'socket.io-client');

describe('section 1: the socket.io client bundle', () => {
  test('served from the installed npm package, byte for byte, with a JavaScript type', async (t) => {
    const version = JSON.parse(readFileSync(join(INSTALLED, 'package.json'), 'utf8')).version;
    const pinned = JSON.parse(readFileSync(join(REPO_ROOT, 'gateway', 'client-bundle', 'package.json'), 'utf8'));
    assert.equal(version, pinned.dependencies['socket.io-client'], 'run `npm ci --prefix gateway/client-bundle`');
    const gw = await startGateway(t);
    for (const name of ['socket.io.js', 'socket.io.min.js', 'socket.io.min.js.map', 'socket.io.esm.min.js']) {
      const res = await http(gw, `/socket.io/${name}`);
      assert.equal(res.status, 200, `${name}: ${res.text.slice(0, 200)}`);
      assert.equal(res.text, readFileSync(join(INSTALLED, 'dist', name), 'utf8'), name);
      const type = res.headers.get('content-type');
      assert.match(type, name.endsWith('.map') ? /^application\/json/ : /^application\/javascript/, name);
    }
    // Engine.IO still owns the rest of the path.
    const handshake = await http(gw, '/socket.io/?EIO=4&transport=polling');
    assert.equal(handshake.status, 200, handshake.text);
    assert.match(handshake.text, /^0\{"sid"/);
    const unknown = await http(gw, '/socket.io/socket.io.other.js');
    assert.notEqual(unknown.status, 200);
  });

  test('a node without the bundle answers 404 saying how to install it', async (t) => {
    const gw = await startGateway(t, { args: ['--client-bundle-dir', '/nonexistent/socket.io-client/dist'] });
    const res = await http(gw, '/socket.io/socket.io.min.js');
    assert.equal(res.status, 404);
    assert.match(res.text, /npm ci --prefix gateway\/client-bundle/);
    assert.match(gw.stderr, /client bundle not found/);
  });
});
