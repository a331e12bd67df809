// Helpers for chat page tests: a browser context per person, with the name and colour the page
// would otherwise ask for already remembered, and the composer as a person uses it.
const { expect } = require('@playwright/test');

// The composer's draft (a multi-line text area: Enter sends, Shift+Enter breaks the line).
const DRAFT = 'textarea.draft';

async function personContext(browser, name, colour, options = {}) {
  const context = await browser.newContext(options);
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
  await page.fill(DRAFT, text);
  await page.press(DRAFT, 'Enter');
}

function texts(page, prefix) {
  return page
    .locator('.message .text')
    .allTextContents()
    .then((all) => all.filter((t) => t.startsWith(prefix)));
}

// The message row whose text is `text`.
function messageWith(page, text) {
  return page.locator('.message').filter({ has: page.locator('.text', { hasText: text }) });
}

module.exports = { DRAFT, personContext, openRoom, say, texts, messageWith };
