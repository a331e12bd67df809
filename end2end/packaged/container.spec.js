// The container image (scripts/container --test runs it and sets SWITCHBOARD_CONTAINER_URL):
// two people chat through a page the image serves, which hydrates in Chromium.
const { test, expect } = require('@playwright/test');
const { say } = require('../tests/support/chat');

const base = process.env.SWITCHBOARD_CONTAINER_URL;

async function person(browser, name) {
  const context = await browser.newContext();
  await context.addInitScript((stored) => {
    window.localStorage.setItem('switchboard.user', stored);
  }, JSON.stringify({ id: `user-${name.toLowerCase()}`, name, colour: '#d9480f' }));
  return context;
}

test('a chat page served by the image hydrates and carries messages between two people', async ({ browser }) => {
  if (!base) throw new Error('SWITCHBOARD_CONTAINER_URL is not set (scripts/container --test sets it)');
  const room = `container-${Date.now()}`;
  const pages = [];
  for (const name of ['Ida', 'Jon']) {
    const page = await (await person(browser, name)).newPage();
    await page.goto(`${base}/chat/${room}`);
    await page.waitForFunction(() => window.__switchboard_hydrated === true);
    await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected');
    pages.push(page);
  }
  await say(pages[0], 'hello from the container');
  await expect(pages[1].locator('.message .text')).toContainText(['hello from the container']);
});
