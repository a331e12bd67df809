// The optional demo sign-in: not offered by default (the server has it off), offered with
// config/demo.toml, where members-* rooms are for signed-in people only.
const { test, expect } = require('@playwright/test');
const os = require('node:os');
const path = require('node:path');
const { personContext, say, texts } = require('./support/chat');
const { startServer } = require('./support/server');
const { seriousViolations } = require('./support/axe');

test('sign-in is off by default, so only joining as a guest is offered', async ({ browser, baseURL }) => {
  const room = `guests-${Date.now()}`;
  const kim = await browser.newContext();
  const page = await kim.newPage();
  await page.goto(`${baseURL}/chat/${room}`);
  // The page asked the server which ways of signing in it offers: none.
  await expect(page.locator('.name-form')).toHaveAttribute('data-sign-in', 'guest-only');
  await expect(page.locator('button.sign-in')).toHaveCount(0);
  await page.fill('#chat-name', 'Kim');
  await page.click('.name-form button[type="submit"]');
  await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected');
  // Another visitor sees the guest, never marked as signed in.
  const lee = await browser.newContext();
  const other = await lee.newPage();
  await other.goto(`${baseURL}/chat/${room}`);
  await other.fill('#chat-name', 'Lee');
  await other.click('.name-form button[type="submit"]');
  await expect(other.locator('.person', { hasText: 'Kim' })).toHaveCount(1);
  await expect(other.locator('.person', { hasText: 'Kim' }).locator('.verified')).toHaveCount(0);
  await Promise.all([kim.close(), lee.close()]);
});

test('with the demo config, signed-in people may enter members rooms and guests may not', async ({ browser }) => {
  const port = Number(process.env.SWITCHBOARD_E2E_DEMO_PORT || Number(process.env.SWITCHBOARD_E2E_PORT || 3100) + 2);
  const history = path.join(os.tmpdir(), `switchboard-demo-${process.pid}-${Date.now()}`, 'history.db');
  const config = path.resolve(__dirname, '..', '..', 'config', 'demo.toml');
  const server = startServer(port, history, { SWITCHBOARD_CONFIG: config });
  await server.ready;
  try {
    const member = await browser.newContext();
    const page = await member.newPage();
    await page.goto(`${server.url}/chat/members-lounge`);
    await expect(page.locator('.name-form')).toHaveAttribute('data-sign-in', 'demo');
    // The form offering the demo account passes axe too, in light and dark mode.
    expect(await seriousViolations(page)).toEqual([]);
    await page.emulateMedia({ colorScheme: 'dark' });
    expect(await seriousViolations(page)).toEqual([]);
    await page.emulateMedia({ colorScheme: 'light' });
    // An error reads as a sentence for a person, never a framework message.
    await page.click('button.sign-in');
    await expect(page.locator('.name-form .send-error')).toHaveText('Type your name first.');
    expect(await seriousViolations(page)).toEqual([]);
    await page.fill('#chat-name', 'Zoe');
    await page.click('button.sign-in');
    await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected');
    await expect(page.locator('.person')).toHaveText(['Zoe']);
    await say(page, 'members only in here');
    await expect.poll(() => texts(page, 'members only')).toEqual(['members only in here']);

    const guest = await personContext(browser, 'Gil', '#888888');
    const outside = await guest.newPage();
    await outside.goto(`${server.url}/chat/members-lounge`);
    await expect(outside.locator('.send-error')).toHaveAttribute('data-code', 'auth_required');
    await expect(outside.locator('.send-error')).toHaveText('This room is for signed-in members. Sign in to enter it.');
    await expect(outside.locator('.connection')).not.toHaveAttribute('data-status', 'connected');
    // The board says the same, in the same words.
    const board = await guest.newPage();
    await board.goto(`${server.url}/cursors/members-lounge`);
    await expect(board.locator('.send-error')).toHaveText('This room is for signed-in members. Sign in to enter it.');
    await expect(board.locator('.send-error')).toHaveAttribute('data-code', 'auth_required');
    await member.close();
    await guest.close();
  } finally {
    await server.stop();
  }
});
