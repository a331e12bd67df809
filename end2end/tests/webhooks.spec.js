// Backend hooks as a back end sees them: webhooks checked with the `standardwebhooks` library
// (not ours), delivered in order and once each, after a receiver's outage, after a kill -9 of
// the server, and from a cluster; and the gates before joins and sends.
const { test, expect } = require('@playwright/test');
const { Webhook } = require('standardwebhooks');
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');
const { startServer, startRedis } = require('./support/server');
const { personContext, openRoom, say, messageWith } = require('./support/chat');

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
// Ports beside the main test server's, so runs with different SWITCHBOARD_E2E_PORT never meet.
const base = Number(process.env.SWITCHBOARD_E2E_PORT || 3100);

// An HTTP receiver on a free port that checks every request with `standardwebhooks` and keeps
// what it verified. `answer(body)` decides the reply (a status, or an object sent as JSON).
async function receiver(answer = () => 204) {
  const verifier = new Webhook(SECRET);
  const received = [];
  const rejected = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', async () => {
      let event;
      try {
        event = verifier.verify(body, req.headers);
      } catch (err) {
        rejected.push(String(err));
        res.writeHead(400);
        res.end();
        return;
      }
      const reply = await answer(event, req.headers);
      if (typeof reply === 'number') {
        if (reply < 300) received.push({ id: req.headers['webhook-id'], event });
        res.writeHead(reply);
        res.end();
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(reply));
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks`,
    received,
    rejected,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

// A socket that joins and sends, waiting for each reply.
async function socket(base, name = 'Anon') {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/rt/hooks`);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const replies = new Map();
  const frames = [];
  ws.on('message', (data) => {
    const frame = JSON.parse(data.toString());
    frames.push(frame);
    if (frame.action === 'reply') replies.get(frame.options.ref)?.(frame.payload);
  });
  let next = 0;
  const request = (frame) => new Promise((resolve) => {
    const ref = `r${next++}`;
    replies.set(ref, resolve);
    ws.send(JSON.stringify({ ...frame, options: { ...frame.options, ref } }));
  });
  return {
    frames,
    join: (channel, extras = { name }) => request({ action: 'join', options: { channel }, payload: { presence: true, extras } }),
    say: (channel, payload) => request({ action: 'message', options: { channel }, payload }),
    leave: (channel) => request({ action: 'leave', options: { channel } }),
    close: () => new Promise((resolve) => { ws.once('close', resolve); ws.close(); }),
  };
}

function tempDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `switchboard-hooks-${tag}-`));
}

const hooked = (hooks, extra = {}) => ({
  SWITCHBOARD_WEBHOOK_URL: hooks.url,
  SWITCHBOARD_WEBHOOK_SECRET: SECRET,
  ...extra,
});

const ofChannel = (received, channel) => received.filter((r) => r.event.data.channel === channel);

test('webhooks arrive signed, in order per channel, and once each', async () => {
  const hooks = await receiver();
  const server = startServer(base + 10, path.join(tempDir('order'), 'h.db'), hooked(hooks));
  await server.ready;
  try {
    const ann = await socket(server.url, 'Ann');
    await ann.join('orders');
    for (let n = 1; n <= 5; n++) expect((await ann.say('orders', { n })).status).toBe('ok');
    const ben = await socket(server.url, 'Ben');
    await ben.join('orders');
    await ann.close();
    // Ben leaves once the server has seen Ann go.
    await expect.poll(() => ben.frames.some((f) => f.action === 'presence_update' && f.payload.action === 'leave')).toBe(true);
    await ben.leave('orders');
    await expect.poll(() => ofChannel(hooks.received, 'orders').length, { timeout: 15_000 }).toBe(11);
    const events = ofChannel(hooks.received, 'orders');
    expect(events.map((r) => r.event.type)).toEqual([
      'channel.occupied', 'member.joined',
      'message.stored', 'message.stored', 'message.stored', 'message.stored', 'message.stored',
      'member.joined', 'member.left', 'member.left', 'channel.vacated',
    ]);
    const stored = events.filter((r) => r.event.type === 'message.stored');
    expect(stored.map((r) => r.event.data.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(stored.map((r) => r.event.data.payload.n)).toEqual([1, 2, 3, 4, 5]);
    expect(stored[0].id).toBe(`msg_${stored[0].event.data.channel}_${stored[0].event.data.epoch}_1`);
    expect(stored[0].event.data.client.extras.name).toBe('Ann');
    const left = events.filter((r) => r.event.type === 'member.left');
    expect(left.map((r) => [r.event.data.client.extras.name, r.event.data.reason])).toEqual([
      ['Ann', 'disconnected'], ['Ben', 'left'],
    ]);
    expect(new Set(hooks.received.map((r) => r.id)).size).toBe(hooks.received.length);
    expect(hooks.rejected).toEqual([]);
  } finally {
    await server.stop();
    await hooks.close();
  }
});

test('a receiver that fails its first attempts gets everything once it recovers, in order', async () => {
  let failures = 0;
  const hooks = await receiver(() => (failures++ < 4 ? 503 : 204));
  const server = startServer(base + 11, path.join(tempDir('retry'), 'h.db'),
    hooked(hooks, { SWITCHBOARD_WEBHOOK_EVENTS: 'message.stored' }));
  await server.ready;
  try {
    const ann = await socket(server.url);
    await ann.join('retried');
    for (let n = 1; n <= 6; n++) await ann.say('retried', { n });
    await expect.poll(() => hooks.received.length, { timeout: 20_000 }).toBe(6);
    expect(hooks.received.map((r) => r.event.data.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(failures).toBeGreaterThan(4);
    await ann.close();
  } finally {
    await server.stop();
    await hooks.close();
  }
});

test('events pending when the server is killed are delivered after it restarts', async () => {
  let up = false;
  const hooks = await receiver(() => (up ? 204 : 503));
  const db = path.join(tempDir('crash'), 'h.db');
  const env = hooked(hooks, { SWITCHBOARD_WEBHOOK_EVENTS: 'message.stored' });
  let server = startServer(base + 12, db, env);
  await server.ready;
  const ann = await socket(server.url);
  await ann.join('crash');
  for (let n = 1; n <= 8; n++) expect((await ann.say('crash', { n })).status).toBe('ok');
  await server.kill();
  server = startServer(base + 12, db, env);
  await server.ready;
  up = true;
  try {
    await expect.poll(() => hooks.received.length, { timeout: 30_000 }).toBe(8);
    expect(hooks.received.map((r) => r.event.data.payload.n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  } finally {
    await server.stop();
    await hooks.close();
  }
});

test('two nodes on one Redis deliver every event, none twice', async () => {
  const dir = tempDir('cluster');
  const redis = startRedis(base + 91, dir);
  await redis.ready;
  const hooks = await receiver();
  const env = hooked(hooks, {
    SWITCHBOARD_ENGINE: 'redis',
    SWITCHBOARD_REDIS_URL: redis.url,
    SWITCHBOARD_REDIS_PREFIX: `hooks-${Date.now()}`,
  });
  const nodes = [startServer(base + 13, path.join(dir, 'a.db'), env), startServer(base + 14, path.join(dir, 'b.db'), env)];
  try {
    await Promise.all(nodes.map((n) => n.ready));
    const onA = await socket(nodes[0].url, 'Ada');
    const onB = await socket(nodes[1].url, 'Bo');
    await onA.join('shared');
    await onB.join('shared');
    for (let n = 1; n <= 5; n++) {
      await onA.say('shared', { from: 'a', n });
      await onB.say('shared', { from: 'b', n });
    }
    await onA.close();
    await onB.close();
    // occupied, 2 joins, 10 messages, 2 leaves, vacated
    await expect.poll(() => ofChannel(hooks.received, 'shared').length, { timeout: 20_000 }).toBe(16);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const events = ofChannel(hooks.received, 'shared');
    expect(events.length).toBe(16);
    expect(new Set(events.map((r) => r.id)).size).toBe(16);
    const kinds = events.map((r) => r.event.type);
    expect(kinds.filter((k) => k === 'channel.occupied')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'channel.vacated')).toHaveLength(1);
    const seqs = events.filter((r) => r.event.type === 'message.stored').map((r) => r.event.data.seq);
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await redis.stop();
    await hooks.close();
  }
});

test('gates refuse and rewrite joins and sends, and a silent gate follows its setting', async () => {
  const gate = await receiver(async (event) => {
    const { channel } = event.data;
    if (channel === 'slow') {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return { allow: true };
    }
    if (event.type === 'gate.join') {
      if (channel === 'closed') return { allow: false, reason: 'closed for the night' };
      if (channel === 'vip') return { allow: true, extras: { name: 'Guest of honour' } };
      return { allow: true };
    }
    const text = String(event.data.payload.text || '');
    if (text.includes('spam')) return { allow: false, reason: 'no spam, thank you' };
    return { allow: true, payload: { text: text.toUpperCase() } };
  });
  const gates = (onFailure) => ({
    SWITCHBOARD_GATE_JOIN_URL: gate.url,
    SWITCHBOARD_GATE_PUBLISH_URL: gate.url,
    SWITCHBOARD_GATE_SECRET: SECRET,
    SWITCHBOARD_GATE_TIMEOUT_MS: '300',
    SWITCHBOARD_GATE_ON_FAILURE: onFailure,
  });
  const strict = startServer(base + 15, path.join(tempDir('gates'), 'a.db'), gates('refuse'));
  const lenient = startServer(base + 16, path.join(tempDir('gates'), 'b.db'), gates('allow'));
  try {
    await Promise.all([strict.ready, lenient.ready]);
    const zoe = await socket(strict.url, 'Zoe');
    const closed = await zoe.join('closed');
    expect([closed.status, closed.code, closed.message]).toEqual(['error', 'forbidden', 'closed for the night']);
    expect((await zoe.join('vip')).status).toBe('ok');
    await expect.poll(() => zoe.frames.find((f) => f.action === 'presence_full')?.payload.presence[0].extras.name)
      .toBe('Guest of honour');
    const spam = await zoe.say('vip', { text: 'buy spam' });
    expect([spam.status, spam.code]).toEqual(['error', 'forbidden']);
    expect((await zoe.say('vip', { text: 'hello' })).status).toBe('ok');
    await expect.poll(() => zoe.frames.filter((f) => f.action === 'message').map((f) => f.payload.text)).toEqual(['HELLO']);
    const slow = await zoe.join('slow');
    expect([slow.status, slow.code]).toEqual(['error', 'forbidden']);
    const lee = await socket(lenient.url, 'Lee');
    expect((await lee.join('slow')).status).toBe('ok');
    expect(gate.rejected).toEqual([]);
    await zoe.close();
    await lee.close();
  } finally {
    await strict.stop();
    await lenient.stop();
    await gate.close();
  }
});

test("the chat page shows the back end's reason when a gate refuses a join or a send", async ({ browser }) => {
  const gate = await receiver(async (event) => {
    if (event.type === 'gate.join' && event.data.channel === 'closed') {
      return { allow: false, reason: 'closed for the night' };
    }
    if (event.type === 'gate.publish' && String(event.data.payload.text || '').includes('spam')) {
      return { allow: false, reason: 'no spam, thank you' };
    }
    return { allow: true };
  });
  const server = startServer(base + 17, path.join(tempDir('gate-page'), 'a.db'), {
    SWITCHBOARD_GATE_JOIN_URL: gate.url,
    SWITCHBOARD_GATE_PUBLISH_URL: gate.url,
    SWITCHBOARD_GATE_SECRET: SECRET,
  });
  const ada = await personContext(browser, 'Ada', '#e5484d');
  try {
    await server.ready;
    const page = await openRoom(ada, server.url, 'lobby');
    await say(page, 'buy spam');
    const refused = messageWith(page, 'buy spam');
    await expect(refused.locator('.delivery')).toContainText('not sent — retry');
    await expect(refused.locator('.delivery .why')).toHaveText('No spam, thank you.');
    await say(page, 'hello');
    await expect(messageWith(page, 'hello')).not.toHaveClass(/sending|refused/);

    const closed = await ada.newPage();
    await closed.goto(`${server.url}/chat/closed`);
    await expect(closed.locator('.send-error')).toHaveText('Closed for the night.');
    expect(gate.rejected).toEqual([]);
  } finally {
    await ada.close();
    await server.stop();
    await gate.close();
  }
});
