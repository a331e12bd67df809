// Helpers for chat page tests: a browser context per person, with the name and colour the page
// would otherwise ask for already remembered.
const { expect } = require('@playwright/test');

async function personContext(browser, name, colour) {
  const context = await browser.newContext();
  const user = { id: `user-${name.toLowerCase()}`, name, colour };
  await context.addInitScript((stored) => {
    window.localStorage.setItem('switchboard.user', stored);
  }, JSON.stringify(user));
  return context;
}

async function openRoom(context, base, room, query = '') {
  const page = await context.newPage();
  page.on('pageerror', (err) => {
    throw err;
  });
  await page.goto(`${base}/chat/${room}${query}`);
  await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected');
  return page;
}

async function say(page, text) {
  await page.fill('input.draft', text);
  await page.press('input.draft', 'Enter');
}

function texts(page, prefix) {
  return page
    .locator('.message .text')
    .allTextContents()
    .then((all) => all.filter((t) => t.startsWith(prefix)));
}

module.exports = { personContext, openRoom, say, texts };
