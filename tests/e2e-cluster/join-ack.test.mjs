// A join is live before it is acknowledged (docs/protocol.md, "Rooms and Socket.IO room
// names"): three gateway processes on one redis-server; a message another node sends at the
// very instant a CONNECT or a room join is acknowledged reaches the socket, many times over,
// while other users keep connecting and leaving on the receiving nodes.
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { client, newRoomId, newUser, once, test } from '../e2e/support/gateway.mjs';
import { call, startCluster, userOn } from './support/cluster.mjs';

const CONNECTS = 200;
const ROOM_JOINS = 100;

describe('a join is live before it is acknowledged, on one Redis', () => {
  let cluster;
  before(async () => {
    // The senders emit hundreds of messages in a row; the per-socket event limit (tested in
    // tests/e2e) would otherwise reject some.
    cluster = await startCluster(null, {
      nodes: 3,
      args: ['--event-rate-limit', '1000', '--event-rate-burst', '1000'],
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  /**
   * Users connecting to nodes 1 and 2 and leaving at once, until the returned function is
   * called: every connect and disconnect makes the receiving nodes compare their rooms.
   */
  function churn() {
    let running = true;
    const loops = [1, 2].map(async (i) => {
      while (running) {
        const socket = client(cluster.nodes[i], { token: cluster.token(newUser('churn')), transport: { transports: ['websocket'] } });
        await once(socket, 'connect', 10_000).catch(() => {});
        socket.disconnect();
      }
    });
    return async () => {
      running = false;
      await Promise.all(loops);
    };
  }

  test(`${CONNECTS} users each get a private message sent from another node the instant their CONNECT is acknowledged`, async (t) => {
    const sender = await userOn(cluster, cluster.nodes[0], newUser('ackFrom'), { t, transport: { transports: ['websocket'] } });
    const stopChurn = churn();
    t.after(stopChurn);
    const lost = [];
    for (let i = 0; i < CONNECTS; i++) {
      const target = newUser('ackTo');
      const where = 1 + (i % 2);
      const socket = client(cluster.nodes[where], { token: cluster.token(target), transport: { transports: ['websocket'] } });
      try {
        const content = `at the ack ${i}`;
        const got = new Promise((resolve) => {
          const timer = setTimeout(() => resolve(false), 3000);
          socket.on('private message', (m) => {
            if (m?.content === content) {
              clearTimeout(timer);
              resolve(true);
            }
          });
        });
        // Sent from the connect handler itself: the message leaves as soon as the ack arrives.
        const acked = new Promise((resolve) => {
          socket.once('connect', () => resolve(call(sender.socket, 'private message', { to: target.userId, content })));
          socket.once('connect_error', (e) => resolve({ connectError: e.message }));
        });
        const ack = await acked;
        assert.equal(ack?.success, true, `private message #${i}: ${JSON.stringify(ack)}`);
        if (!(await got)) lost.push(`#${i} to node ${where}`);
      } finally {
        socket.disconnect();
      }
    }
    await stopChurn();
    assert.deepEqual(lost, [], `private messages sent at the CONNECT ack, acked { success: true } and never delivered: ${lost.length}/${CONNECTS}`);
  });

  test(`${ROOM_JOINS} room joins each get a room message sent from another node the instant the join is acknowledged`, async (t) => {
    const speaker = await userOn(cluster, cluster.nodes[0], newUser('roomSpeaker'), { t, transport: { transports: ['websocket'] } });
    const stopChurn = churn();
    t.after(stopChurn);
    const lost = [];
    for (let i = 0; i < ROOM_JOINS; i++) {
      const roomId = newRoomId('ackroom');
      assert.equal((await call(speaker.socket, 'create room', { roomId, roomName: `Ack ${i}` }))?.success, true);
      assert.equal((await call(speaker.socket, 'join room', { roomId }))?.success, true);
      const where = 1 + (i % 2);
      const joiner = await userOn(cluster, cluster.nodes[where], newUser('roomJoiner'), { transport: { transports: ['websocket'] } });
      try {
        const message = `at the join ack ${i}`;
        const got = new Promise((resolve) => {
          const timer = setTimeout(() => resolve(false), 3000);
          joiner.socket.on('room message', (m) => {
            if (m?.message === message) {
              clearTimeout(timer);
              resolve(true);
            }
          });
        });
        const joined = await call(joiner.socket, 'join room', { roomId });
        assert.equal(joined?.success, true, `join #${i}: ${JSON.stringify(joined)}`);
        const sent = await call(speaker.socket, 'room message', { roomId, message });
        assert.equal(sent?.success, true, `room message #${i}: ${JSON.stringify(sent)}`);
        if (!(await got)) lost.push(`#${i} on node ${where}`);
      } finally {
        joiner.socket.disconnect();
        await call(speaker.socket, 'leave room', { roomId }).catch(() => {});
      }
    }
    await stopChurn();
    assert.deepEqual(lost, [], `room messages sent at the join ack and never delivered: ${lost.length}/${ROOM_JOINS}`);
  });
});
