// A plain program on a room's socket, as a back end or a script would be (the `ws` package,
// no browser): it joins, sends chat messages or cursor updates, and waits for each ok.
const WebSocket = require('ws');
const crypto = require('node:crypto');

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Joins `room` on the server at `base` (http://host:port) with `extras` as its public identity.
async function joinAsPeer(base, room, extras = { id: 'peer', name: 'Peer', colour: '#6e56cf' }) {
  const socket = new WebSocket(`${base.replace(/^http/, 'ws')}/rt/peer`);
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const waiting = new Map();
  let next = 0;
  socket.on('message', (data) => {
    const frame = JSON.parse(data.toString());
    const ref = frame.options && frame.options.ref;
    if (frame.action === 'reply' && waiting.has(ref)) {
      waiting.get(ref)(frame.payload);
      waiting.delete(ref);
    }
  });
  const request = (frame) => {
    const ref = `p${++next}`;
    frame.options.ref = ref;
    socket.send(JSON.stringify(frame));
    return new Promise((resolve) => waiting.set(ref, resolve));
  };
  const joined = await request({ action: 'join', options: { channel: room }, payload: { extras } });
  if (joined.status !== 'ok') throw new Error(`join refused: ${JSON.stringify(joined)}`);
  return {
    // Sends a chat message as the chat page would; resolves with its id once stored.
    async say(text) {
      const id = crypto.randomUUID();
      const user = { id: extras.id, name: extras.name, colour: extras.colour };
      const payload = { id, text, user, sent_at: new Date().toISOString() };
      const outcome = await request({ action: 'message', options: { channel: room, id }, payload });
      if (outcome.status !== 'ok') throw new Error(`message refused: ${JSON.stringify(outcome)}`);
      return id;
    },
    // Sends `count` chat messages named by `text(n)`, paced under the per-socket rate limit.
    async sayMany(count, text) {
      for (let n = 1; n <= count; n++) {
        await this.say(text(n));
        await sleep(25);
      }
    },
    // Moves this peer's cursor to (x, y), fractions of the board (a volatile update).
    point(x, y, chat) {
      const payload = { kind: 'cursor', x, y };
      if (chat) payload.chat = chat;
      socket.send(JSON.stringify({ action: 'message', options: { channel: room, volatile: true }, payload }));
    },
    close() {
      socket.close();
    },
  };
}

module.exports = { joinAsPeer, sleep };
