// Helpers of the outgoing-queue attacks: a `/game` player that stops reading, big actions,
// /metrics counters and a process's resident memory.
import { readFileSync } from 'node:fs';
import { http, waitFor, T } from '../../e2e/support/gateway.mjs';
import { rawWebSocket } from '../../e2e/support/raw.mjs';

/** Value of a Prometheus counter or gauge on `gw` (0 when absent). */
export async function metric(gw, name) {
  const { text } = await http(gw, '/metrics');
  let total = 0;
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m && m[1] === name) total += Number(m[3]);
  }
  return total;
}

/** Resident set size of process `pid`, bytes (Linux). */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(status.match(/^VmRSS:\s+(\d+)\s+kB/m)?.[1]);
  if (!Number.isFinite(kb)) throw new Error(`no VmRSS for pid ${pid}`);
  return kb * 1024;
}

/**
 * A raw WebSocket `/game` player in `gameId` that then stops reading: its TCP receive window
 * fills and the node's writes to it block, as with a client on a dead network. `resume()`
 * reads again; `frames` collects what it read.
 */
export async function stalledPlayer(gw, token, gameId) {
  const raw = await rawWebSocket(gw, { token, namespace: '/game' });
  raw.send(`42/game,0["join game",${JSON.stringify({ gameId })}]`);
  await waitFor(() => raw.frames.some((f) => typeof f === 'string' && f.startsWith('43/game,0')), T, {
    what: 'the stalled player joining the game',
  });
  raw.ws._socket.pause();
  return { ...raw, resume: () => raw.ws._socket.resume() };
}

/** A `game action` payload of about `bytes` bytes. */
export function bigAction(gameId, bytes, i) {
  return { gameId, i, blob: 'x'.repeat(bytes) };
}

/**
 * A raw long-polling `/game` player in `gameId` that then never polls again: its frames pile up
 * in its queue on the node. `poll()` reads once more (packets, split).
 */
export async function stalledPollingPlayer(gw, token, gameId) {
  const { rawPolling } = await import('../../e2e/support/raw.mjs');
  const session = await rawPolling(gw);
  const packets = [];
  const poll = async () => {
    const { status, text } = await session.get();
    if (status !== 200) throw new Error(`poll answered ${status}: ${text}`);
    const got = text.split('\x1e');
    packets.push(...got);
    return got;
  };
  const until = async (pred, what) => {
    for (let i = 0; i < 20 && !packets.some(pred); i += 1) await poll();
    if (!packets.some(pred)) throw new Error(`stalled polling player: no ${what} in ${JSON.stringify(packets)}`);
  };
  await session.post(`40/game,${JSON.stringify({ token })}`);
  await until((p) => p.startsWith('40/game,{'), 'CONNECT ack');
  await session.post(`42/game,0["join game",${JSON.stringify({ gameId })}]`);
  await until((p) => p.startsWith('43/game,0'), 'join game ack');
  return { ...session, packets, poll };
}
