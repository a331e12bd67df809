// The pictures in the README: the chat (three people, an edit, a reaction, someone typing) and
// the board (three cursors, one with cursor chat), at desktop and phone sizes. Every run takes
// them (into test-results/screenshots/); `SWITCHBOARD_SCREENSHOTS=update` writes them to
// docs/screenshots/, which the README shows. Look at them before committing.
const { test, expect } = require('@playwright/test');
const fs = require('node:fs');
const path = require('node:path');
const { DRAFT, personContext, openRoom, say, messageWith } = require('./support/chat');

const docs = process.env.SWITCHBOARD_SCREENSHOTS === 'update'
  ? path.resolve(__dirname, '..', '..', 'docs', 'screenshots')
  : path.resolve(__dirname, '..', 'test-results', 'screenshots');
const sizes = [
  ['desktop', { viewport: { width: 1280, height: 800 } }],
  ['phone', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 }],
];

async function keep(page, name) {
  fs.mkdirSync(docs, { recursive: true });
  await page.screenshot({ path: path.join(docs, `${name}.png`) });
}

async function react(page, text, name) {
  const message = messageWith(page, text);
  await message.hover();
  await message.locator('button.react').click();
  await page.locator(`.picker button[aria-label="React with ${name}"]`).click();
  await expect(page.locator('.picker')).toHaveCount(0);
}

for (const [size, options] of sizes) {
  test(`screenshots of the chat and the board (${size})`, async ({ browser, baseURL }) => {
    const room = `design-review-${size}`;
    const ada = await personContext(browser, 'Ada', '#e5484d', { ...options, colorScheme: 'light' });
    const ben = await personContext(browser, 'Ben', '#30a46c');
    const cy = await personContext(browser, 'Cy', '#0090ff');
    const a = await openRoom(ada, baseURL, room);
    const b = await openRoom(ben, baseURL, room);
    const c = await openRoom(cy, baseURL, room);
    await say(b, 'Morning! Is the release still on for 10:00?');
    await say(a, 'Yes. Checklist: https://example.com/release-checklist');
    await say(c, 'I will watch the dashboards 👀');
    await say(b, 'teh rollback plan is in the doc');
    const plan = messageWith(b, 'teh rollback');
    await plan.hover();
    await plan.locator('button.edit').click();
    await b.locator('.edit-box textarea').fill('The rollback plan is in the doc too.');
    await b.locator('.edit-box textarea').press('Enter');
    await expect(messageWith(a, 'The rollback plan').locator('.edited')).toHaveCount(1);
    await react(c, 'Morning!', 'thumbs up');
    await react(a, 'Morning!', 'thumbs up');
    await react(b, 'dashboards', 'party');
    await expect(messageWith(a, 'Morning!').locator('button.reaction')).toHaveText(['👍2']);
    await c.locator(DRAFT).pressSequentially('On my w');
    await expect(a.locator('.typing')).toHaveText('Cy is typing…');
    // Ada is back in her draft, as after reacting; no message has the pointer or focus.
    await a.mouse.move(0, 0);
    await a.locator(DRAFT).focus();
    await expect(a.locator('.message .actions').first()).toHaveCSS('opacity', '0');
    await keep(a, `chat-${size}`);

    const board = await ada.newPage();
    await board.goto(`${baseURL}/cursors/${room}`);
    await expect(board.locator('.connection')).toHaveAttribute('data-status', 'connected');
    const dee = await personContext(browser, 'Dee', '#6e56cf');
    const boards = [];
    for (const context of [ben, cy, dee]) {
      const page = await context.newPage();
      await page.goto(`${baseURL}/cursors/${room}`);
      await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected');
      boards.push(page);
    }
    const moveTo = async (page, fx, fy) => {
      const box = await page.locator('.cursor-canvas').boundingBox();
      await page.mouse.move(box.x + fx * box.width, box.y + fy * box.height, { steps: 6 });
    };
    await moveTo(boards[0], 0.25, 0.35);
    await moveTo(boards[1], 0.6, 0.62);
    await moveTo(boards[2], 0.78, 0.25);
    await boards[0].keyboard.press('/');
    await boards[0].locator('.cursor-chat-input').pressSequentially('Let’s put the timeline here');
    await expect(board.locator('.cursor[data-name="Ben"] .cursor-chat')).toHaveText('Let’s put the timeline here');
    await expect(board.locator('.cursor')).toHaveCount(3);
    await board.waitForTimeout(400);
    await keep(board, `board-${size}`);
    await Promise.all([ada.close(), ben.close(), cy.close(), dee.close()]);
  });
}
