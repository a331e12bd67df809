// Accessibility: no serious or critical axe-core violations on the home, sign-in, chat and
// cursors views, in light and dark mode; the chat works from the keyboard alone; the list is a
// log and the connection state a status; and a reader who asked for less motion gets none.
const { test, expect } = require('@playwright/test');
const { DRAFT, personContext, openRoom, say, messageWith } = require('./support/chat');
const { joinAsPeer } = require('./support/peer');
const { seriousViolations } = require('./support/axe');

for (const colorScheme of ['light', 'dark']) {
  test(`home, sign-in, chat and cursors have no serious or critical axe violations (${colorScheme})`, async ({ browser, baseURL }) => {
    const room = `a11y-${colorScheme}-${Date.now()}`;
    const visitor = await browser.newContext({ colorScheme });
    const home = await visitor.newPage();
    await home.goto(baseURL);
    await home.waitForFunction(() => window.__switchboard_hydrated === true);
    expect(await seriousViolations(home)).toEqual([]);

    const signIn = await visitor.newPage();
    await signIn.goto(`${baseURL}/chat/${room}`);
    await expect(signIn.locator('.name-form')).toHaveAttribute('data-sign-in', 'guest-only');
    expect(await seriousViolations(signIn)).toEqual([]);

    // A chat in use: several people (colours light and dark), an edit, reactions, typing.
    const ada = await personContext(browser, 'Ada', '#ffc53d', { colorScheme });
    const ben = await personContext(browser, 'Ben', '#0b1f5c', { colorScheme });
    const a = await openRoom(ada, baseURL, room);
    const b = await openRoom(ben, baseURL, room);
    await say(b, 'see https://example.com for the agenda');
    await say(a, 'thanks');
    const mine = messageWith(a, 'thanks');
    await mine.hover();
    await mine.locator('button.edit').click();
    await a.locator('.edit-box textarea').fill('thanks, Ben');
    await a.locator('.edit-box textarea').press('Enter');
    await expect(mine.locator('.edited')).toHaveCount(1);
    const his = messageWith(a, 'agenda');
    await his.hover();
    await his.locator('button.react').click();
    await a.locator('.picker button').first().click();
    await b.locator(DRAFT).pressSequentially('typing away');
    await expect(a.locator('.typing')).toHaveText('Ben is typing…');
    await expect(his.locator('button.reaction')).toHaveCount(1);
    expect(await seriousViolations(a)).toEqual([]);
    // With a message's actions and the reaction picker open.
    await his.hover();
    await his.locator('button.react').click();
    await expect(a.locator('.picker')).toBeVisible();
    expect(await seriousViolations(a)).toEqual([]);
    await a.keyboard.press('Escape');

    // The board with people moving, idle, and one saying something.
    const board = await ada.newPage();
    await board.goto(`${baseURL}/cursors/${room}`);
    await expect(board.locator('.connection')).toHaveAttribute('data-status', 'connected');
    const pia = await joinAsPeer(baseURL, room, { id: 'user-pia', name: 'Pia', colour: '#ffc53d' });
    const tom = await joinAsPeer(baseURL, room, { id: 'user-tom', name: 'Tom', colour: 'navy' });
    pia.point(0.3, 0.3, 'over here');
    tom.point(0.6, 0.6);
    await expect(board.locator('.cursor .cursor-chat')).toHaveText('over here');
    expect(await seriousViolations(board)).toEqual([]);
    await expect(board.locator('.cursor[data-name="Tom"]')).toHaveClass(/stale/, { timeout: 6000 });
    pia.point(0.35, 0.3, 'over here');
    expect(await seriousViolations(board)).toEqual([]);
    pia.close();
    tom.close();
    await Promise.all([visitor.close(), ada.close(), ben.close()]);
  });
}

test('the chat works from the keyboard alone, with a log, labels and a status', async ({ browser, baseURL }) => {
  const room = `keys-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const a = await openRoom(ada, baseURL, room);
  const b = await openRoom(ben, baseURL, room);
  await expect(a.locator('.messages')).toHaveAttribute('role', 'log');
  await expect(a.locator('.connection [role="status"]')).toHaveText('connected');
  await expect(a.locator(DRAFT)).toHaveAttribute('aria-label', `Message #${room}`);

  await a.locator(DRAFT).focus();
  await a.keyboard.type('frist');
  await a.keyboard.press('Enter');
  await expect(messageWith(b, 'frist')).toHaveCount(1);
  // Up in an empty draft edits one's last message; Enter saves and the keyboard goes back.
  await a.keyboard.press('ArrowUp');
  await expect(a.locator('.edit-box textarea')).toBeFocused();
  await a.keyboard.press('Control+A');
  await a.keyboard.type('first');
  await a.keyboard.press('Enter');
  await expect(messageWith(b, /^first$/).locator('.edited')).toHaveCount(1);
  await expect(a.locator(DRAFT)).toBeFocused();

  // Back from the draft to the message's actions.
  const focusedIs = (selector) => a.evaluate((s) => document.activeElement.matches(s), selector);
  for (let i = 0; i < 15 && !(await focusedIs('.message button.react')); i++) {
    await a.keyboard.press('Shift+Tab');
  }
  expect(await focusedIs('.message button.react')).toBe(true);
  await a.keyboard.press('Enter');
  await expect(a.locator('.picker button').first()).toBeFocused();
  await a.keyboard.press('Escape');
  await expect(a.locator('.picker')).toHaveCount(0);
  // The focus goes back once the row without the picker is drawn (a frame later).
  await expect.poll(() => focusedIs('.message button.react')).toBe(true);
  await a.keyboard.press('Enter');
  // The picker takes the focus when it opens; a Tab before that would leave from elsewhere.
  await expect(a.locator('.picker button').first()).toBeFocused();
  await a.keyboard.press('Tab');
  await expect(a.locator('.picker button').nth(1)).toBeFocused();
  await a.keyboard.press('Enter');
  await expect(messageWith(b, 'first').locator('button.reaction')).toHaveText('❤️1');

  // Delete, confirmed, by keyboard.
  const message = messageWith(a, 'first');
  await message.locator('button.delete').focus();
  await a.keyboard.press('Enter');
  await expect(a.locator('.confirm button.confirm-delete')).toBeFocused();
  await a.keyboard.press('Enter');
  await expect(b.locator('.message .deleted')).toHaveText('message deleted');
  await Promise.all([ada.close(), ben.close()]);
});

test('a reader who asked for less motion gets no animation', async ({ browser, baseURL }) => {
  const room = `calm-${Date.now()}`;
  const seeder = await joinAsPeer(baseURL, room);
  await seeder.sayMany(40, (n) => `line ${n}`);
  const ada = await personContext(browser, 'Ada', '#e5484d', { reducedMotion: 'reduce', viewport: { width: 1000, height: 600 } });
  const a = await openRoom(ada, baseURL, room);
  await a.locator('.messages').evaluate((list) => list.scrollBy(0, -list.clientHeight));
  await seeder.say('news 1');
  await seeder.say('news 2');
  await expect(a.locator('.new-messages')).toBeVisible();
  // The jump to new messages happens at once rather than as a smooth scroll.
  const moved = await a.evaluate(() => {
    const list = document.querySelector('.messages');
    const before = list.scrollTop;
    document.querySelector('.new-messages').click();
    return list.scrollTop - before;
  });
  expect(moved).toBeGreaterThan(100);
  const board = await ada.newPage();
  await board.goto(`${baseURL}/cursors/${room}`);
  await expect(board.locator('.connection')).toHaveAttribute('data-status', 'connected');
  seeder.point(0.5, 0.5);
  await expect(board.locator('.cursor svg')).toHaveCSS('transition-duration', '0s');
  seeder.close();
  await ada.close();
});
