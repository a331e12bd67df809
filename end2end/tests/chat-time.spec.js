// Server time: every stored message carries when the server stored it, and each reader sees
// it in their own time zone and language, under day headings ("Today", "Yesterday", dates).
const { test, expect } = require('@playwright/test');
const { personContext, openRoom, say, messageWith } = require('./support/chat');

const DAY = 24 * 3600 * 1000;

// The clock time a reader in `timeZone` writing `locale` sees for the ISO time `iso`.
function clockIn(iso, timeZone, locale) {
  return new Date(iso).toLocaleTimeString(locale, { timeZone, hour: '2-digit', minute: '2-digit' });
}

test('each reader sees the server’s time in their own time zone, under day headings', async ({ browser, baseURL }) => {
  const room = `time-${Date.now()}`;
  const tokyo = await personContext(browser, 'Ada', '#e5484d', { timezoneId: 'Asia/Tokyo', locale: 'en-GB' });
  const newYork = await personContext(browser, 'Ben', '#30a46c', { timezoneId: 'America/New_York', locale: 'en-US' });
  // Cy's computer clock is two days slow: the time shown is still the server's.
  const slow = await personContext(browser, 'Cy', '#0090ff', { timezoneId: 'Europe/Paris', locale: 'en-GB' });
  const a = await openRoom(tokyo, baseURL, room);
  const b = await openRoom(newYork, baseURL, room);
  const c = await slow.newPage();
  await c.clock.setFixedTime(Date.now() - 2 * DAY);
  await c.goto(`${baseURL}/chat/${room}`);
  await expect(c.locator('.connection')).toHaveAttribute('data-status', 'connected');
  await say(a, 'what time is it?');
  await say(c, 'my clock is slow');

  const sent = await messageWith(a, 'what time is it?').locator('time').getAttribute('datetime');
  expect(Math.abs(new Date(sent).getTime() - Date.now())).toBeLessThan(60_000);
  const slowSent = await messageWith(b, 'my clock is slow').locator('time').getAttribute('datetime');
  expect(Math.abs(new Date(slowSent).getTime() - Date.now())).toBeLessThan(60_000);
  for (const [page, zone, locale] of [[a, 'Asia/Tokyo', 'en-GB'], [b, 'America/New_York', 'en-US']]) {
    await expect(messageWith(page, 'what time is it?').locator('time')).toHaveText(clockIn(sent, zone, locale));
    await expect(page.locator('.day-heading')).toHaveText(['Today']);
  }

  // Seen a day later, the same messages are yesterday's; a week later, under their date.
  const later = await personContext(browser, 'Dee', '#6e56cf', { timezoneId: 'Asia/Tokyo', locale: 'en-GB' });
  const d = await later.newPage();
  await d.clock.setFixedTime(Date.now() + DAY);
  await d.goto(`${baseURL}/chat/${room}`);
  await expect(d.locator('.connection')).toHaveAttribute('data-status', 'connected');
  await expect(d.locator('.day-heading')).toHaveText(['Yesterday']);
  await d.clock.setFixedTime(Date.now() + 7 * DAY);
  await d.reload();
  await expect(d.locator('.connection')).toHaveAttribute('data-status', 'connected');
  const date = new Date(sent).toLocaleDateString('en-GB', { timeZone: 'Asia/Tokyo', weekday: 'long', day: 'numeric', month: 'long' });
  await expect(d.locator('.day-heading')).toHaveText([date]);
  await Promise.all([tokyo.close(), newYork.close(), slow.close(), later.close()]);
});

test('the server renders times in UTC; the page switches to the reader’s zone', async ({ browser, baseURL, request }) => {
  const room = `utc-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d', { timezoneId: 'Asia/Kolkata', locale: 'en-GB' });
  const a = await openRoom(ada, baseURL, room);
  await say(a, 'rendered on the server');
  // Stored once the server says ok: only then is it in what the server renders.
  await expect(messageWith(a, 'rendered on the server')).toHaveCount(1);
  await expect(messageWith(a, 'rendered on the server')).not.toHaveClass(/sending/);
  const html = await (await request.get(`${baseURL}/chat/${room}`)).text();
  const iso = html.match(/datetime="([^"]+)"/)[1];
  expect(html).toContain(`>${iso.slice(11, 16)}</time>`);
  expect(html).toContain('>Today</h2>');
  const b = await openRoom(ada, baseURL, room);
  await expect(messageWith(b, 'rendered on the server').locator('time')).toHaveText(clockIn(iso, 'Asia/Kolkata', 'en-GB'));
  await ada.close();
});
