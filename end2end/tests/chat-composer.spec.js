// The composer: Enter sends, Shift+Enter breaks the line, a count of the characters left
// shows near the limit, and web addresses become links that open safely.
const { test, expect } = require('@playwright/test');
const { DRAFT, personContext, openRoom, say, texts, messageWith } = require('./support/chat');

test('multi-line messages, the count near the limit, and safe links', async ({ browser, baseURL }) => {
  const room = `composer-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const a = await openRoom(ada, baseURL, room);
  const b = await openRoom(ben, baseURL, room);

  const draft = a.locator(DRAFT);
  await draft.pressSequentially('line one');
  await draft.press('Shift+Enter');
  await draft.pressSequentially('line two');
  await expect(draft).toHaveValue('line one\nline two');
  await draft.press('Enter');
  await expect(draft).toHaveValue('');
  await expect.poll(() => texts(b, 'line one')).toEqual(['line one\nline two']);

  // The count appears near the 2000-character limit, and the draft stops there.
  const count = a.locator('.composer-hint .count');
  await draft.fill('x'.repeat(1700));
  await expect(count).toHaveCount(0);
  await draft.fill('x'.repeat(1850));
  await expect(count).toHaveText('150 characters left');
  await draft.fill('x'.repeat(2000));
  await expect(count).toHaveText('0 characters left');
  await expect(count).toHaveClass(/at-limit/);
  await draft.press('End');
  await draft.pressSequentially('y');
  await expect(draft).toHaveValue('x'.repeat(2000));
  await draft.fill('');

  const text = 'docs at https://example.com/guide?a=1, not javascript:alert(1) or <b>this</b>';
  await say(a, text);
  for (const page of [a, b]) {
    const message = messageWith(page, 'docs at');
    await expect(message.locator('.text')).toHaveText(text);
    const links = message.locator('.text a');
    await expect(links).toHaveCount(1);
    await expect(links).toHaveText('https://example.com/guide?a=1');
    await expect(links).toHaveAttribute('href', 'https://example.com/guide?a=1');
    await expect(links).toHaveAttribute('rel', 'noopener noreferrer');
    await expect(links).toHaveAttribute('target', '_blank');
    await expect(message.locator('.text b')).toHaveCount(0);
  }
  await Promise.all([ada.close(), ben.close()]);
});
