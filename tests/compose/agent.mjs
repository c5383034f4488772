// A remote-controlled socket.io-client, run inside a container on one of the client networks of
// tests/compose/run.sh (so that nginx sees it from that network's /24). It reads one JSON command
// per line on stdin and writes one JSON line per answer or received event on stdout:
//   {"op":"http","seq":1,"path":"/stats"}                       -> {"seq":1,"status":200,"body":...}
//   {"op":"connect","seq":2,"id":"s1","token":"...","opts":{}}  -> {"seq":2,"ok":true} once connected
//   {"op":"emit","seq":3,"id":"s1","event":"e","args":[...],"ack":true} -> {"seq":3,"ack":[...]}
//   {"op":"close","seq":4,"id":"s1"}                           -> {"seq":4,"ok":true}
// and, for every socket, {"id":"s1","event":"<name>","args":[...]} for each event, plus the
// built-in "connect", "disconnect" (with the reason) and "connect_error" (with the message).
import { createInterface } from 'node:readline';
import { io } from 'socket.io-client';

const base = process.env.AGENT_BASE_URL;
const sockets = new Map();
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

async function handle(cmd) {
  const { op, seq } = cmd;
  try {
    if (op === 'http') {
      const res = await fetch(base + cmd.path, { signal: AbortSignal.timeout(cmd.ms ?? 10_000) });
      const text = await res.text();
      let body = text;
      try {
        body = JSON.parse(text);
      } catch {
        // plain text
      }
      return out({ seq, status: res.status, body });
    }
    if (op === 'connect') {
      const socket = io(base + (cmd.namespace ?? '/'), {
        auth: { token: cmd.token },
        transports: ['websocket'],
        reconnectionDelay: 200,
        reconnectionDelayMax: 1000,
        ...(cmd.opts ?? {}),
      });
      sockets.set(cmd.id, socket);
      socket.onAny((event, ...args) => out({ id: cmd.id, event, args }));
      socket.on('connect', () => out({ id: cmd.id, event: 'connect', args: [] }));
      socket.on('disconnect', (reason) => out({ id: cmd.id, event: 'disconnect', args: [reason] }));
      socket.on('connect_error', (e) => out({ id: cmd.id, event: 'connect_error', args: [e.message] }));
      socket.once('connect', () => out({ seq, ok: true }));
      return undefined;
    }
    const socket = sockets.get(cmd.id);
    if (!socket) return out({ seq, error: `no socket ${cmd.id}` });
    if (op === 'emit') {
      if (!cmd.ack) {
        socket.emit(cmd.event, ...(cmd.args ?? []));
        return out({ seq, ok: true });
      }
      const ack = await socket.timeout(cmd.ms ?? 10_000).emitWithAck(cmd.event, ...(cmd.args ?? []));
      return out({ seq, ack: [ack] });
    }
    if (op === 'close') {
      socket.close();
      sockets.delete(cmd.id);
      return out({ seq, ok: true });
    }
    return out({ seq, error: `unknown op ${op}` });
  } catch (e) {
    return out({ seq, error: String(e?.message ?? e) });
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim()) handle(JSON.parse(line));
});
process.stdin.on('end', () => {
  for (const s of sockets.values()) s.close();
  process.exit(0);
});
out({ ready: true });
