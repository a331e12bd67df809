// Editing and deleting one's own messages, and reactions: delivered to everyone, kept in the
// history, so a reload, a later visitor and the server-rendered page see the same.
const { test, expect } = require('@playwright/test');
const { personContext, openRoom, say, texts, messageWith } = require('./support/chat');

test('people edit and delete their own messages, and everyone sees it, now and later', async ({ browser, baseURL, request }) => {
  const room = `edits-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const a = await openRoom(ada, baseURL, room);
  const b = await openRoom(ben, baseURL, room);
  await say(a, 'teh plan is ready');
  await say(b, 'great, send it');
  await expect.poll(() => texts(a, 'great')).toEqual(['great, send it']);

  // Only one's own messages offer edit and delete.
  const hers = messageWith(b, 'teh plan');
  await hers.hover();
  await expect(hers.locator('button.react')).toBeVisible();
  await expect(hers.locator('button.edit')).toHaveCount(0);
  await expect(hers.locator('button.delete')).toHaveCount(0);

  // Ada edits in place: Enter saves.
  const mine = messageWith(a, 'teh plan');
  await mine.hover();
  await mine.locator('button.edit').click();
  const box = a.locator('.edit-box textarea');
  await expect(box).toBeFocused();
  await expect(box).toHaveValue('teh plan is ready');
  await box.fill('the plan is ready');
  await box.press('Enter');
  for (const page of [a, b]) {
    await expect.poll(() => texts(page, 'the plan')).toEqual(['the plan is ready']);
    await expect(messageWith(page, 'the plan').locator('.edited')).toHaveText('(edited)');
    expect(await texts(page, 'teh plan')).toEqual([]);
  }
  // Escape leaves an edit without changing anything.
  await messageWith(a, 'the plan').hover();
  await messageWith(a, 'the plan').locator('button.edit').click();
  await a.locator('.edit-box textarea').fill('never mind');
  await a.locator('.edit-box textarea').press('Escape');
  await expect(a.locator('.edit-box')).toHaveCount(0);
  expect(await texts(a, 'the plan')).toEqual(['the plan is ready']);

  // Deleting asks first.
  await say(a, 'oops, wrong room');
  const oops = messageWith(a, 'oops');
  const id = await oops.getAttribute('data-id');
  await oops.hover();
  await oops.locator('button.delete').click();
  await expect(a.locator('.confirm')).toContainText('Delete this message for everyone?');
  await a.locator('.confirm button.cancel').click();
  await expect(a.locator('.confirm')).toHaveCount(0);
  expect(await texts(a, 'oops')).toEqual(['oops, wrong room']);
  await oops.hover();
  await oops.locator('button.delete').click();
  await a.locator('.confirm button.confirm-delete').click();
  for (const page of [a, b]) {
    await expect(page.locator(`.message[data-id="${id}"] .deleted`)).toHaveText('message deleted');
    expect(await texts(page, 'oops')).toEqual([]);
  }

  // A later visitor, a reload and the server-rendered page all see the same.
  const cy = await personContext(browser, 'Cy', '#0090ff');
  const c = await openRoom(cy, baseURL, room);
  await b.reload();
  for (const page of [c, b]) {
    await expect.poll(() => texts(page, 'the plan')).toEqual(['the plan is ready']);
    await expect(messageWith(page, 'the plan').locator('.edited')).toHaveText('(edited)');
    await expect(page.locator(`.message[data-id="${id}"] .deleted`)).toHaveText('message deleted');
  }
  const html = await (await request.get(`${baseURL}/chat/${room}`)).text();
  expect(html).toContain('the plan is ready');
  expect(html).not.toContain('teh plan');
  expect(html).not.toContain('oops, wrong room');
  expect(html).toContain('message deleted');
  await Promise.all([ada.close(), ben.close(), cy.close()]);
});

test('reactions are counted per emoji, say who reacted, and can be taken back', async ({ browser, baseURL }) => {
  const room = `reactions-${Date.now()}`;
  const [ada, ben, cy] = await Promise.all([
    personContext(browser, 'Ada', '#e5484d'),
    personContext(browser, 'Ben', '#30a46c'),
    personContext(browser, 'Cy', '#0090ff'),
  ]);
  const a = await openRoom(ada, baseURL, room);
  const b = await openRoom(ben, baseURL, room);
  const c = await openRoom(cy, baseURL, room);
  await say(a, 'lunch at noon?');
  const react = async (page, name) => {
    const message = messageWith(page, 'lunch at noon?');
    await message.hover();
    await message.locator('button.react').click();
    await page.locator(`.picker button[aria-label="React with ${name}"]`).click();
    await expect(page.locator('.picker')).toHaveCount(0);
  };
  await react(b, 'thumbs up');
  await react(c, 'thumbs up');
  await react(c, 'party');
  for (const page of [a, b, c]) {
    const chips = messageWith(page, 'lunch').locator('button.reaction');
    await expect(chips).toHaveCount(2);
    await expect(chips.nth(0)).toHaveText('👍2');
    await expect(chips.nth(0)).toHaveAttribute('title', 'Ben and Cy reacted with 👍');
    await expect(chips.nth(1)).toHaveText('🎉1');
    await expect(chips.nth(1)).toHaveAttribute('title', 'Cy reacted with 🎉');
  }
  const bensThumb = messageWith(b, 'lunch').locator('button.reaction').nth(0);
  await expect(bensThumb).toHaveAttribute('aria-pressed', 'true');
  await expect(messageWith(a, 'lunch').locator('button.reaction').nth(0)).toHaveAttribute('aria-pressed', 'false');

  // Pressing one's own reaction takes it back; pressing another's adds one's own.
  await bensThumb.click();
  await messageWith(a, 'lunch').locator('button.reaction').nth(1).click();
  for (const page of [a, b, c]) {
    const chips = messageWith(page, 'lunch').locator('button.reaction');
    await expect(chips.nth(0)).toHaveText('👍1');
    await expect(chips.nth(0)).toHaveAttribute('title', 'Cy reacted with 👍');
    await expect(chips.nth(1)).toHaveText('🎉2');
    await expect(chips.nth(1)).toHaveAttribute('title', 'Cy and Ada reacted with 🎉');
  }
  await a.reload();
  await expect(messageWith(a, 'lunch').locator('button.reaction')).toHaveText(['👍1', '🎉2']);
  await Promise.all([ada.close(), ben.close(), cy.close()]);
});

test('on a touch screen a tap on a message shows its actions, and reacting works from there', async ({ browser, baseURL }) => {
  const room = `touch-actions-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c', {
    viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
  });
  const a = await openRoom(ada, baseURL, room);
  const b = await openRoom(ben, baseURL, room);
  await say(a, 'anyone for coffee?');
  const message = messageWith(b, 'anyone for coffee?');
  const actions = message.locator('.actions');
  await expect(actions).toHaveCSS('opacity', '0');
  await message.locator('.text').tap();
  await expect(actions).toHaveCSS('opacity', '1');
  await message.locator('button.react').tap();
  await b.locator('.picker button[aria-label="React with heart"]').tap();
  await expect(messageWith(a, 'anyone for coffee?').locator('button.reaction')).toHaveText(['❤️1']);
  await Promise.all([ada.close(), ben.close()]);
});
