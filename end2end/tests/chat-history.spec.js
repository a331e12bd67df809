// Earlier messages: the page opens on the newest, pages back through the history as the
// reader scrolls up (or asks), keeps their place while it does, and while they read older
// messages new ones wait below behind a "N new messages" control and an unread marker.
const { test, expect } = require('@playwright/test');
const { personContext, openRoom, say, messageWith } = require('./support/chat');
const { joinAsPeer } = require('./support/peer');

// Where the message with `text` is drawn, from the top of the window.
async function topOf(page, text) {
  const box = await messageWith(page, new RegExp(`^${text}$`)).boundingBox();
  return box && box.y;
}

test('scrolling up pages back through the history and keeps the reader’s place', async ({ browser, baseURL }) => {
  const room = `paging-${Date.now()}`;
  const seeder = await joinAsPeer(baseURL, room);
  await seeder.sayMany(120, (n) => `early ${n}`);
  seeder.close();

  const ada = await personContext(browser, 'Ada', '#e5484d', { viewport: { width: 1000, height: 700 } });
  const a = await openRoom(ada, baseURL, room);
  // The page opens on the newest messages (as many as a join's history holds), at the bottom.
  await expect(a.locator('.message')).toHaveCount(50);
  await expect(a.locator('.message .text').last()).toHaveText('early 120');
  await expect(a.locator('.message .text').last()).toBeInViewport();
  await expect(a.locator('.beginning')).toHaveCount(0);

  // At the top, the 50 before load, and the message the reader was looking at stays put.
  const before = await a.locator('.messages').evaluate((list) => {
    list.scrollTo(0, 0);
    return list.querySelector('.message').getBoundingClientRect().top;
  });
  await expect(a.locator('.message')).toHaveCount(100);
  await expect.poll(() => topOf(a, 'early 71')).toBeCloseTo(before, -1);
  await expect(messageWith(a, /^early 71$/)).toBeInViewport();

  // Further up, the rest, down to the room's beginning.
  await a.locator('.messages').evaluate((list) => list.scrollTo(0, 0));
  await expect(a.locator('.message')).toHaveCount(120);
  await expect(a.locator('.beginning')).toHaveText(`This is the beginning of #${room}.`);
  const order = await a.locator('.message .text').allTextContents();
  expect(order).toEqual(Array.from({ length: 120 }, (_, i) => `early ${i + 1}`));

  // Someone arriving later on a screen tall enough for the whole first page has nothing to
  // scroll: the button is how they ask. (On a shorter screen, reaching the button scrolls the
  // list to its top, which pages back by itself.)
  const ben = await personContext(browser, 'Ben', '#30a46c', { viewport: { width: 1000, height: 3600 } });
  const b = await openRoom(ben, baseURL, room);
  await expect(b.locator('.message')).toHaveCount(50);
  expect(await b.locator('.messages').evaluate((list) => list.scrollHeight <= list.clientHeight)).toBe(true);
  await b.click('button.load-earlier');
  await expect(b.locator('.message')).toHaveCount(100);
  await Promise.all([ada.close(), ben.close()]);
});

test('new messages wait below while the reader reads older ones, behind a control and a marker', async ({ browser, baseURL }) => {
  const room = `reading-${Date.now()}`;
  const seeder = await joinAsPeer(baseURL, room);
  await seeder.sayMany(40, (n) => `old ${n}`);
  seeder.close();
  const ada = await personContext(browser, 'Ada', '#e5484d', { viewport: { width: 1000, height: 600 } });
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const a = await openRoom(ada, baseURL, room);
  const b = await openRoom(ben, baseURL, room);

  // While the reader is at the bottom, new messages come into view.
  await say(b, 'ben first');
  await expect(messageWith(a, 'ben first')).toBeInViewport();
  await expect(a.locator('.new-messages')).toHaveCount(0);

  // Ada scrolls up to read; Ben writes twice. Her list does not move.
  await messageWith(a, /^old 20$/).evaluate((message) => message.scrollIntoView({ block: 'center' }));
  await expect(messageWith(a, /^old 20$/)).toBeInViewport();
  const reading = await topOf(a, 'old 20');
  await say(b, 'ben second');
  await say(b, 'ben third');
  await expect(a.locator('.new-messages')).toHaveText('2 new messages ↓');
  expect(await topOf(a, 'old 20')).toBeCloseTo(reading, 0);
  await expect(messageWith(a, 'ben second')).not.toBeInViewport();
  // The unread marker sits just before the first of them.
  await expect(a.locator('.unread-marker + .message .text')).toHaveText('ben second');

  // The control takes her down to them and goes.
  await a.click('.new-messages');
  await expect(messageWith(a, 'ben third')).toBeInViewport();
  await expect(a.locator('.new-messages')).toHaveCount(0);
  await expect(a.locator('.unread-marker')).toHaveCount(1);
  // Writing a message herself clears the marker.
  await say(a, 'caught up');
  await expect(a.locator('.unread-marker')).toHaveCount(0);
  await Promise.all([ada.close(), ben.close()]);
});
