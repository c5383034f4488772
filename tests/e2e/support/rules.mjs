// Assertions shared by the namespace tests: the rejected-event rule of docs/protocol.md
// (section "Namespaces and events").
import assert from 'node:assert/strict';
import { ask, once, T } from './gateway.mjs';

/**
 * Emits `event` with an ack and asserts the rejection shape of docs/protocol.md
 * (section "Namespaces and events"):
 * exactly an ack `{ success: false, error: <text> }` plus an `error` event `{ event, message }`.
 * Returns `{ ack, error }`.
 */
export async function expectRejected(socket, event, payload, { error: expectedError } = {}) {
  const errorEvent = once(socket, 'error', T);
  const ack = payload === undefined ? await ask(socket, event) : await ask(socket, event, payload);
  assert.equal(ack?.success, false, `expected ${event} to be rejected, ack was ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error, 'string', `ack.error must be a human readable string: ${JSON.stringify(ack)}`);
  assert.ok(ack.error.length > 0);
  if (expectedError !== undefined) assert.equal(ack.error, expectedError);
  const err = await errorEvent.catch((e) => {
    throw new Error(`no "error" event after a rejected ${event}: ${e.message}`);
  });
  assert.equal(err?.event, event, `error event names the event: ${JSON.stringify(err)}`);
  assert.equal(typeof err.message, 'string');
  if (expectedError !== undefined) assert.equal(err.message, expectedError);
  return { ack, error: err };
}

/** Asserts an accepted ack `{ success: true, ... }` and returns it. */
export async function expectAccepted(socket, event, ...args) {
  const ack = await ask(socket, event, ...args);
  assert.equal(ack?.success, true, `expected ${event} to succeed, ack was ${JSON.stringify(ack)}`);
  return ack;
}

/** Asserts no key or value in `payload` carries a password or its hash. */
export function assertNoSecrets(payload, password) {
  const text = JSON.stringify(payload);
  assert.ok(!text.includes(password), `payload leaks the room password: ${text}`);
  assert.ok(!/\$argon2|\$2[aby]\$|pbkdf2|scrypt/i.test(text), `payload leaks a password hash: ${text}`);
  assert.ok(!/"(password|passwordHash|password_hash|hash|salt)"\s*:/i.test(text), `payload has a password field: ${text}`);
}
