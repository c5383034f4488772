// Two headless Chromium pages of the demo page, as two browser tabs of a newcomer, chat through
// the compose cluster's nginx (COMPOSE_URL, set by tests/compose/run.sh): tokens from /dev/token,
// the socket.io client from /socket.io/socket.io.min.js, and every request that leaves the page's
// origin blocked and reported (no CDN, no internet).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const URL_BASE = process.env.COMPOSE_URL;

async function waitFor(what, ms, fn) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('the demo page on the compose cluster', () => {
  const dirs = [];
  const contexts = [];
  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function open(label) {
    const dir = mkdtempSync(join(tmpdir(), `compose-chromium-${label}-`));
    dirs.push(dir);
    const context = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    contexts.push(context);
    const page = context.pages()[0] ?? (await context.newPage());
    const problems = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    const origin = new URL(URL_BASE).origin;
    await context.route('**/*', (route) => {
      if (route.request().url().startsWith(origin)) return route.continue();
      problems.push(`blocked external request: ${route.request().url()}`);
      return route.abort();
    });
    await page.goto(`${URL_BASE}/`, { waitUntil: 'load', timeout: 20_000 });
    return { page, problems };
  }

  test('two tabs join one room and exchange a message', { timeout: 120_000 }, async () => {
    assert.ok(URL_BASE, 'COMPOSE_URL is set by tests/compose/run.sh');
    const alice = await open('alice');
    const bob = await open('bob');
    const room = `browser-${process.pid}`;
    for (const [who, name] of [[alice, 'alice'], [bob, 'bob']]) {
      assert.equal(await who.page.evaluate(() => typeof window.io), 'function', 'socket.io-client loaded from the gateway');
      await who.page.fill('#username', name);
      await who.page.click('#connect');
      await who.page.fill('#room-id', room);
      // The button is enabled once the socket is connected; the first join creates the room.
      await who.page.click('#join-room', { timeout: 15_000 });
      await waitFor(`${name} joined ${room}`, 15_000, async () => (await who.page.textContent('#messages'))?.includes(`Joined room ${room}`));
    }
    const text = `hello through nginx ${Date.now()}`;
    await alice.page.fill('#message', text);
    await alice.page.click('#send');
    await waitFor("alice's message on bob's page", 15_000, async () => (await bob.page.textContent('#messages'))?.includes(text));
    assert.deepEqual([...alice.problems, ...bob.problems], []);
  });
});
