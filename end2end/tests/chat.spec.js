// The chatroom as people use it: several browsers in one room, presence, history after a
// reload, a server restart, errors shown in the page, and text that is never HTML.
const { test, expect } = require('@playwright/test');
const { DRAFT, personContext, openRoom, say, texts, messageWith } = require('./support/chat');
const { startServer } = require('./support/server');
const os = require('node:os');
const path = require('node:path');

test('three people in room1 see every message once, in order, by socket and by server function', async ({ browser, baseURL }, testInfo) => {
  const run = `run-${Date.now()}`;
  const contexts = await Promise.all([
    personContext(browser, 'Ada', '#e5484d'),
    personContext(browser, 'Ben', '#30a46c'),
    personContext(browser, 'Cy', '#0090ff'),
  ]);
  const [a, b, c] = [
    await openRoom(contexts[0], baseURL, 'room1'),
    await openRoom(contexts[1], baseURL, 'room1', '?debug=1'),
    await openRoom(contexts[2], baseURL, 'room1'),
  ];
  for (const page of [a, b, c]) {
    await expect(page.locator('.presence h2')).toHaveText('Here now · 3');
  }

  const sent = [`${run} one`, `${run} two`, `${run} three`];
  for (const text of sent) await say(a, text);
  await b.fill(DRAFT, `${run} four (HTTP)`);
  await b.click('button.via-server');
  const expected = [...sent, `${run} four (HTTP)`];
  for (const page of [a, b, c]) {
    await expect.poll(() => texts(page, run)).toEqual(expected);
  }
  await expect(a.locator(DRAFT)).toHaveValue('');
  await a.screenshot({ path: testInfo.outputPath('chat-three-users.png'), fullPage: true });

  await contexts[2].close();
  for (const page of [a, b]) {
    await expect(page.locator('.presence h2')).toHaveText('Here now · 2');
  }
  await Promise.all(contexts.slice(0, 2).map((context) => context.close()));
});

test('a reload keeps the history, and the server renders it into the page', async ({ browser, baseURL, request }) => {
  const room = `history-${Date.now()}`;
  const context = await personContext(browser, 'Dee', '#6e56cf');
  const page = await openRoom(context, baseURL, room);
  await say(page, 'remember me');
  await expect.poll(() => texts(page, 'remember')).toEqual(['remember me']);
  // Stored once the server says ok: only then is it in what the server renders.
  await expect(messageWith(page, 'remember me')).not.toHaveClass(/sending/);

  const html = await (await request.get(`${baseURL}/chat/${room}`)).text();
  expect(html).toContain('remember me');

  await page.reload();
  await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected');
  await expect.poll(() => texts(page, 'remember')).toEqual(['remember me']);
  await context.close();
});

test('errors from the server show in the page and the typed text stays', async ({ browser, baseURL }) => {
  const context = await personContext(browser, 'Eve', '#d6409f');
  const page = await openRoom(context, baseURL, `errors-${Date.now()}`, '?debug=1');
  await page.fill(DRAFT, 'nobody will get this');
  await page.click('button.to-unjoined');
  const error = page.locator('.send-error');
  await expect(error).toHaveAttribute('data-code', 'not_subscribed');
  await expect(error).toContainText('not_subscribed');
  await expect(page.locator(DRAFT)).toHaveValue('nobody will get this');
  await context.close();
});

test('HTML in a message is shown as text, never run', async ({ browser, baseURL }) => {
  const context = await personContext(browser, 'Flo', '#12a594');
  const page = await openRoom(context, baseURL, `html-${Date.now()}`);
  const evil = '<script>window.__pwned = 1</script><b>bold</b><img src=x onerror="window.__pwned = 2">';
  await say(page, evil);
  await expect.poll(() => texts(page, '<script>')).toEqual([evil]);
  await expect(page.locator('.message .text b')).toHaveCount(0);
  await expect(page.locator('.message .text img')).toHaveCount(0);
  expect(await page.evaluate(() => window.__pwned)).toBeUndefined();
  await page.reload();
  await expect.poll(() => texts(page, '<script>')).toEqual([evil]);
  expect(await page.evaluate(() => window.__pwned)).toBeUndefined();
  await context.close();
});

test('a server restart: pages reconnect, rejoin, and a message typed offline arrives once', async ({ browser }) => {
  const port = Number(process.env.SWITCHBOARD_E2E_RESTART_PORT || Number(process.env.SWITCHBOARD_E2E_PORT || 3100) + 1);
  const history = path.join(os.tmpdir(), `switchboard-restart-${process.pid}-${Date.now()}`, 'history.db');
  let server = startServer(port, history);
  await server.ready;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const a = await openRoom(ada, server.url, 'room1');
  const b = await openRoom(ben, server.url, 'room1');
  await expect(a.locator('.presence h2')).toHaveText('Here now · 2');
  await say(b, 'said before the restart');
  await expect.poll(() => texts(a, 'said before')).toEqual(['said before the restart']);

  expect(await server.stop()).toBe(0);
  for (const page of [a, b]) {
    await expect(page.locator('.connection')).toHaveAttribute('data-status', /reconnecting|offline/);
  }
  await say(a, 'typed while the server was down');
  await expect(a.locator('.connection')).toContainText('1 waiting to send');

  server = startServer(port, history);
  await server.ready;
  for (const page of [a, b]) {
    await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected', { timeout: 20_000 });
    await expect(page.locator('.presence h2')).toHaveText('Here now · 2');
    await expect.poll(() => texts(page, 'typed while')).toEqual(['typed while the server was down']);
  }
  await expect(a.locator('.connection')).not.toContainText('waiting to send');
  // Rejoining resumed from where each page was: nothing shown twice, and the history is on disk.
  for (const page of [a, b]) {
    await expect.poll(() => texts(page, 'said before')).toEqual(['said before the restart']);
  }
  await b.reload();
  await expect.poll(() => texts(b, 'said before')).toEqual(['said before the restart']);
  await expect.poll(() => texts(b, 'typed while')).toEqual(['typed while the server was down']);
  await ada.close();
  await ben.close();
  await server.stop();
});

test('one person with two tabs is listed once, and leaving the page leaves the room', async ({ browser, baseURL }) => {
  const room = `tabs-${Date.now()}`;
  const gus = await personContext(browser, 'Gus', '#f76b15');
  const hal = await personContext(browser, 'Hal', '#0090ff');
  const first = await openRoom(gus, baseURL, room);
  await openRoom(gus, baseURL, room);
  const other = await openRoom(hal, baseURL, room);
  await expect(other.locator('.presence h2')).toHaveText('Here now · 2');
  await expect(other.locator('.person[data-user="user-gus"]')).toContainText('Gus (2 tabs)');

  // Client-side navigation away from the chat cleans the page up: it leaves the channel.
  await first.click('a.back');
  await expect(first).toHaveURL(/\/$/);
  await expect(other.locator('.person[data-user="user-gus"]')).toHaveText('Gus');
  await gus.close();
  await expect(other.locator('.presence h2')).toHaveText('Here now · 1');
  await hal.close();
});

test('new messages scroll into view', async ({ browser, baseURL }, testInfo) => {
  const context = await browser.newContext({ colorScheme: 'dark', viewport: { width: 900, height: 500 } });
  await context.addInitScript(() => {
    window.localStorage.setItem('switchboard.user', JSON.stringify({ id: 'user-ivy', name: 'Ivy', colour: '#ffc53d' }));
  });
  const page = await openRoom(context, baseURL, `scroll-${Date.now()}`);
  for (let n = 1; n <= 25; n++) await say(page, `line ${n}`);
  const last = page.locator('.message .text', { hasText: /^line 25$/ });
  await expect(last).toBeInViewport();
  await page.screenshot({ path: testInfo.outputPath('chat-dark.png') });
  await context.close();
});
