// Real browser: Debian's headless Chromium driven by playwright-core. Two pages of the demo chat
// page served by the gateway at `/` exchange a room message.
//
// The demo page's element ids (agreed with the page engineer): `#username` + `#connect` (fetches a
// token from /dev/token in --dev mode), `#room-id` + `#join-room` (creates the room if missing, then
// joins), `#message` + `#send` (room message to the joined room), `#messages` (received messages).
// The page loads socket.io-client from the gateway itself (`/socket.io/socket.io.min.js`); every
// request leaving the page's origin is blocked and fails the test, and the gateway's bundle gets a
// recorder appended that only observes.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe } from 'node:test';
import { chromium } from 'playwright-core';
import { REPO_ROOT, freePort, startGateway, test, waitFor } from '../e2e/support/gateway.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const require = createRequire(import.meta.url);
const CLIENT_BUNDLE = join(dirname(require.resolve('socket.io-client/package.json')), 'dist', 'socket.io.min.js');
const BUNDLE_PATH = '/socket.io/socket.io.min.js';
const RECORDER = `
;(function () {
  var original = window.io;
  if (!original || original.__e2eWrapped) return;
  var record = (window.__e2e = { sockets: [], events: [] });
  function wrapped() {
    var socket = original.apply(this, arguments);
    record.sockets.push(socket);
    socket.onAny(function (event) { record.events.push({ event: event, args: Array.prototype.slice.call(arguments, 1) }); });
    socket.on('connect', function () { record.events.push({ event: 'connect', args: [] }); });
    return socket;
  }
  Object.assign(wrapped, original);
  wrapped.__e2eWrapped = true;
  window.io = wrapped;
})();
`;

async function openChatPage(url, label, dirs) {
  const userDataDir = mkdtempSync(join(tmpdir(), `e2e-chromium-${label}-`));
  dirs.push(userDataDir);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  const bundles = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console.error: ${m.text()}`));
  const origin = new URL(url).origin;
  await context.route('**/*', async (route) => {
    const requested = route.request().url();
    if (requested === origin + BUNDLE_PATH) {
      // Served by the gateway under test, compared with the npm package's own file.
      const response = await route.fetch();
      const served = await response.text();
      bundles.push({ status: response.status(), same: served === readFileSync(CLIENT_BUNDLE, 'utf8') });
      return route.fulfill({ response, body: served + RECORDER });
    }
    if (requested.startsWith(origin)) return route.continue();
    problems.push(`blocked external request: ${requested}`);
    return route.abort();
  });
  await page.goto(url, { waitUntil: 'load', timeout: 20_000 });
  assert.deepEqual(bundles, [{ status: 200, same: true }], `the page loads ${BUNDLE_PATH} from the gateway once`);
  return { context, page, problems };
}

describe('demo page in headless Chromium', () => {
  const dirs = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('two pages join one room and exchange a room message', { timeout: 120_000 }, async (t) => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium`);
    // E2E_STATIC_DIR only lets the test itself be checked against another copy of a page.
    const staticDir = process.env.E2E_STATIC_DIR || join(REPO_ROOT, 'gateway', 'static');
    assert.ok(existsSync(join(staticDir, 'index.html')), `demo page missing: ${staticDir}/index.html`);
    const port = await freePort();
    const origins = `http://127.0.0.1:${port},http://localhost:${port}`;
    const gw = await startGateway(t, { noSecret: true, port, args: ['--dev', '--static-dir', staticDir, '--allowed-origins', origins] });
    const url = `http://127.0.0.1:${port}/`;

    const alice = await openChatPage(url, 'alice', dirs);
    const bob = await openChatPage(url, 'bob', dirs);
    t.after(async () => {
      await alice.context.close().catch(() => {});
      await bob.context.close().catch(() => {});
    });
    const shot = async (p, name) => {
      const path = join(tmpdir(), `e2e-demo-${name}-${process.pid}.png`);
      await p.page.screenshot({ path }).catch(() => {});
      return path;
    };

    try {
      const roomId = `browser-room-${process.pid}`;
      for (const [who, name] of [[alice, 'alice'], [bob, 'bob']]) {
        await who.page.fill('#username', name);
        await who.page.click('#connect');
        await waitFor(() => who.page.evaluate(() => window.__e2e?.events.some((e) => e.event === 'welcome')), 15_000, {
          what: `${name}'s page to be welcomed`,
        });
        await who.page.fill('#room-id', roomId);
        await who.page.click('#join-room');
        await waitFor(() => who.page.evaluate(() => window.__e2e?.events.some((e) => e.event === 'room joined')), 15_000, {
          what: `${name}'s page to join the room`,
        });
      }
      const text = `hello from alice ${Date.now()}`;
      await alice.page.fill('#message', text);
      await alice.page.click('#send');
      await waitFor(async () => (await bob.page.textContent('#messages'))?.includes(text), 15_000, {
        what: "alice's message in bob's #messages",
      });
      // The browser's socket ends on WebSocket (polling first, then the upgrade with an Origin header).
      await waitFor(() => bob.page.evaluate(() => window.__e2e.sockets.some((s) => s.io?.engine?.transport?.name === 'websocket')), 15_000, {
        what: "bob's socket to upgrade to websocket",
      });
      const received = await bob.page.evaluate(() => window.__e2e.events.filter((e) => e.event === 'room message').map((e) => e.args[0]));
      assert.ok(received.some((m) => m.message === text && m.roomId === roomId && m.username === 'alice'), JSON.stringify(received));
      assert.deepEqual(alice.problems.concat(bob.problems).filter((p) => p.startsWith('pageerror')), []);
    } catch (e) {
      const shots = [await shot(alice, 'alice'), await shot(bob, 'bob')];
      e.message += `\nscreenshots: ${shots.join(' ')}\nalice problems: ${alice.problems.join('; ')}\nbob problems: ${bob.problems.join('; ')}`;
      throw e;
    }
  });
});
