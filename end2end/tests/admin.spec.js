// The admin console as an operator uses it, against a server with real people chatting in
// Chromium tabs: signing in with an admin key, the live channel list, a channel's members and
// its messages as they arrive, sending as the server, removing and disconnecting a member,
// clearing history, and webhook delivery with a replay of dead events — from the keyboard
// where an operator would.
const { test, expect } = require('@playwright/test');
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { personContext, openRoom, say, texts } = require('./support/chat');
const { startServer, startRedis } = require('./support/server');

const KEY = 'e2e-admin-key-0123456789';
// Ports beside the main test server's, so runs with different SWITCHBOARD_E2E_PORT never meet.
const base = Number(process.env.SWITCHBOARD_E2E_PORT || 3100);

// A webhook receiver that fails until `recover()` and keeps what it accepted.
async function flakyReceiver() {
  let healthy = false;
  const received = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      if (healthy) received.push(JSON.parse(body));
      res.writeHead(healthy ? 204 : 503);
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks`,
    received,
    recover: () => { healthy = true; },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

for (const engine of ['sqlite', 'redis']) test(`an operator watches a channel, speaks in it, and removes and disconnects people (${engine})`, async ({ browser }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-admin-'));
  const hooks = await flakyReceiver();
  let redis = null;
  let engineEnv = {};
  if (engine === 'redis') {
    redis = startRedis(base + 92, dir);
    await redis.ready;
    engineEnv = { SWITCHBOARD_ENGINE: 'redis', SWITCHBOARD_REDIS_URL: redis.url, SWITCHBOARD_REDIS_PREFIX: `e2e-admin-${Date.now()}` };
  }
  const server = startServer(engine === 'redis' ? base + 21 : base + 20, path.join(dir, 'h.db'), {
    ...engineEnv,
    SWITCHBOARD_ADMIN_KEYS: KEY,
    SWITCHBOARD_WEBHOOK_URL: hooks.url,
    SWITCHBOARD_WEBHOOK_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    SWITCHBOARD_WEBHOOK_EVENTS: 'message.stored',
    SWITCHBOARD_WEBHOOK_GIVE_UP_MS: '1000',
  });
  try {
    await server.ready;
    const ada = await openRoom(await personContext(browser, 'Ada', '#e5484d'), server.url, 'ops-room');
    const ben = await openRoom(await personContext(browser, 'Ben', '#30a46c'), server.url, 'ops-room');
    await openRoom(await personContext(browser, 'Cy', '#3d6cf2'), server.url, 'elsewhere');
    await say(ada, 'first words');

    const operator = await (await browser.newContext()).newPage();
    operator.on('pageerror', (err) => { throw err; });
    await operator.goto(`${server.url}/admin`);

    // A wrong key is refused with a sentence, and nothing is shown.
    await operator.getByLabel('Admin key').fill('not-the-key');
    await operator.getByLabel('Admin key').press('Enter');
    await expect(operator.getByRole('alert')).toContainText('The admin key was refused');
    await expect(operator.getByRole('heading', { name: 'Live channels' })).toHaveCount(0);

    // The right key opens the console; it lasts for the tab (a reload keeps it).
    await operator.getByLabel('Admin key').fill(KEY);
    await operator.getByLabel('Admin key').press('Enter');
    await expect(operator.getByRole('heading', { name: 'Live channels' })).toBeVisible();
    await operator.reload();
    await expect(operator.getByRole('heading', { name: 'Live channels' })).toBeVisible();
    const row = operator.getByRole('row', { name: /ops-room/ });
    await expect(row.getByRole('cell').nth(0)).toHaveText('2'); // members
    await expect(operator.getByRole('row', { name: /elsewhere/ })).toBeVisible();

    // The filter narrows the list; the keyboard opens a channel.
    await operator.getByLabel('Filter by name').fill('ops');
    await expect(operator.getByRole('row', { name: /elsewhere/ })).toHaveCount(0);
    await operator.getByLabel('Filter by name').press('Tab');
    await expect(operator.getByRole('button', { name: 'ops-room' })).toBeFocused();
    await operator.keyboard.press('Enter');
    await expect(operator.getByRole('heading', { name: 'ops-room', level: 2 })).toBeVisible();
    const members = operator.locator('.admin-members tbody tr');
    await expect(members).toHaveCount(2);
    await expect(members.filter({ hasText: 'Ada' })).toBeVisible();
    const log = operator.getByRole('log', { name: 'Messages' });
    await expect(log).toContainText('first words');

    // Messages arrive in the console as people send them.
    await say(ben, 'ben is here');
    await expect(log).toContainText('ben is here', { timeout: 5_000 });

    // The operator speaks as the server; everyone in the room sees it.
    await operator.getByLabel('Send as the server').fill('Maintenance at six');
    await operator.getByLabel('Send as the server').press('Tab');
    await operator.keyboard.press('Enter');
    await expect(operator.getByRole('status')).toContainText('Sent to ops-room as the server');
    for (const page of [ada, ben]) {
      await expect.poll(() => texts(page, 'Maintenance')).toEqual(['Maintenance at six']);
    }
    await expect(log).toContainText('Maintenance at six');

    // Remove Ben from the channel: he leaves its presence, Ada stays.
    await operator.getByRole('button', { name: 'Remove from the channel: Ben' }).click();
    await expect(operator.getByRole('status')).toContainText('Removed Ben from ops-room');
    await expect(members).toHaveCount(1);
    await expect(members).toContainText('Ada');

    // Disconnect Ada: her socket is closed and she is gone from the channel.
    await operator.getByRole('button', { name: 'Disconnect Ada' }).click();
    await expect(operator.getByRole('status')).toContainText('Disconnected Ada');
    await expect(ada.locator('.connection')).not.toHaveAttribute('data-status', 'connected');
    // ...and her page does not come straight back (4001: not at once).
    await ada.waitForTimeout(2_000);
    await expect(ada.locator('.connection')).not.toHaveAttribute('data-status', 'connected');
    await expect(members).toHaveCount(0);

    // Webhooks: the receiver failed every attempt, so the stored messages went dead; once it
    // is back, Replay delivers them.
    const endpoint = operator.locator('.admin-webhooks tbody tr');
    // (the three stored messages: an endpoint's events of one channel go in order, so each
    // waits for the one before it to be delivered or given up.)
    await expect(endpoint.getByRole('cell').nth(2)).toHaveText('3', { timeout: 20_000 });
    expect(hooks.received).toEqual([]);
    hooks.recover();
    await endpoint.getByRole('button', { name: /Replay the dead events/ }).click();
    await expect(operator.getByRole('status')).toContainText('Replaying the dead events');
    await expect.poll(() => hooks.received.length, { timeout: 15_000 }).toBe(3);
    await expect(endpoint.getByRole('cell').nth(2)).toHaveText('0');
    const delivered = hooks.received.map((event) => event.data.payload.text);
    expect(delivered).toEqual(['first words', 'ben is here', 'Maintenance at six']);

    // Clearing history asks first, then empties the channel's messages.
    operator.once('dialog', (dialog) => dialog.accept());
    await operator.getByRole('button', { name: 'Clear history…' }).click();
    await expect(operator.getByRole('status')).toContainText('Cleared the history of ops-room');
    await expect(log.locator('li')).toHaveCount(0);

    // Signing out forgets the key.
    await operator.getByRole('button', { name: 'Sign out' }).click();
    await expect(operator.getByLabel('Admin key')).toBeVisible();
    await operator.reload();
    await expect(operator.getByLabel('Admin key')).toBeVisible();
  } finally {
    await server.stop();
    await hooks.close();
    if (redis) await redis.stop();
  }
});

test('the console says so when the server has no admin keys', async ({ page, baseURL }) => {
  await page.goto(`${baseURL}/admin`);
  await page.getByLabel('Admin key').fill('anything');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toContainText('The admin key was refused');
});
