// Raw Engine.IO v4 / Socket.IO v5 over WebSocket and HTTP long-polling, for malformed-input tests.
import WebSocket from 'ws';
import { waitFor, T } from './gateway.mjs';

/**
 * Opens a raw Engine.IO WebSocket, answers pings, and optionally connects to a namespace with a token.
 * Returns `{ ws, frames, closed, open, send, isClosed }`; `frames` collects every text/binary frame.
 */
export async function rawWebSocket(gw, { token, namespace = '/', connect = true, answerPings = true } = {}) {
  const url = `${gw.url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
  const ws = new WebSocket(url);
  const frames = [];
  let closedInfo = null;
  const closed = new Promise((res) => ws.once('close', (code, reason) => res((closedInfo = { code, reason: String(reason) }))));
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    const frame = isBinary ? data : data.toString();
    frames.push(frame);
    if (frame === '2' && answerPings) ws.send('3');
  });
  await new Promise((res, rej) => {
    ws.once('open', res);
    ws.once('error', rej);
  });
  await waitFor(() => frames.some((f) => typeof f === 'string' && f.startsWith('0{')), T, { what: 'the Engine.IO open packet' });
  const open = JSON.parse(frames.find((f) => typeof f === 'string' && f.startsWith('0{')).slice(1));
  const raw = { ws, frames, closed, open, send: (d) => ws.send(d), isClosed: () => closedInfo !== null };
  if (connect) {
    const nsPrefix = namespace === '/' ? '' : `${namespace},`;
    ws.send(`40${nsPrefix}${JSON.stringify(token ? { token } : {})}`);
    await waitFor(() => frames.some((f) => typeof f === 'string' && (f.startsWith(`40${nsPrefix}{`) || f.startsWith(`44${nsPrefix}`))), T, {
      what: `the CONNECT answer for ${namespace}`,
    });
  }
  return raw;
}

/** Opens a raw long-polling session: `{ sid, open, get(), post(body, headers) }`. */
export async function rawPolling(gw) {
  const base = `${gw.url}/socket.io/?EIO=4&transport=polling`;
  const first = await fetch(base, { signal: AbortSignal.timeout(T) });
  const text = await first.text();
  if (!text.startsWith('0{')) throw new Error(`unexpected polling handshake: ${first.status} ${text}`);
  const open = JSON.parse(text.slice(1));
  const url = `${base}&sid=${encodeURIComponent(open.sid)}`;
  return {
    sid: open.sid,
    open,
    url,
    get: async (ms = T) => {
      const r = await fetch(url, { signal: AbortSignal.timeout(ms) });
      return { status: r.status, text: await r.text() };
    },
    post: async (body, headers = { 'content-type': 'text/plain;charset=UTF-8' }) => {
      const r = await fetch(url, { method: 'POST', body, headers, signal: AbortSignal.timeout(T) });
      return { status: r.status, text: await r.text() };
    },
  };
}
