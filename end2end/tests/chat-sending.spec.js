// One's own messages: shown at once as "sending…", as normal messages once the server says ok,
// as "not sent — retry" with the reason and a retry when it says no; and a message written while the
// server cannot be reached survives a reload and is still sent, once.
const { test, expect } = require('@playwright/test');
const { DRAFT, personContext, openRoom, say, texts, messageWith } = require('./support/chat');

// A chat message the page sends (not a volatile typing update).
function chatText(message) {
  const frame = JSON.parse(message.toString());
  return frame.action === 'message' && frame.payload && frame.payload.text;
}

test('a message shows as sending at once, as sent on the ok, and with a retry when refused', async ({ browser, baseURL }) => {
  const room = `sending-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const b = await openRoom(ben, baseURL, room);
  const a = await ada.newPage();
  // Between Ada's page and the server: messages starting with "hold" wait until released, and
  // the first "refuse me" gets the server's "overloaded" refusal.
  const held = [];
  let toServer;
  let refused = false;
  await a.routeWebSocket(/\/rt\//, (page) => {
    const server = page.connectToServer();
    toServer = server;
    page.onMessage((message) => {
      const text = chatText(message);
      if (text && text.startsWith('hold')) return held.push(message);
      if (text === 'refuse me' && !refused) {
        refused = true;
        const frame = JSON.parse(message.toString());
        return page.send(JSON.stringify({
          action: 'reply',
          options: { channel: room, ref: frame.options.ref },
          payload: { status: 'error', code: 'overloaded', message: 'store queue full' },
        }));
      }
      return server.send(message);
    });
  });
  await a.goto(`${baseURL}/chat/${room}`);
  await expect(a.locator('.connection')).toHaveAttribute('data-status', 'connected');

  await say(a, 'hold on');
  const mine = messageWith(a, 'hold on');
  await expect(mine).toHaveClass(/sending/);
  await expect(mine.locator('.delivery')).toHaveText('sending…');
  await expect(a.locator(DRAFT)).toHaveValue('');
  await b.waitForTimeout(300);
  expect(await texts(b, 'hold on')).toEqual([]);
  for (const message of held.splice(0)) toServer.send(message);
  await expect(mine).not.toHaveClass(/sending/);
  await expect(mine.locator('.delivery')).toHaveCount(0);
  await expect.poll(() => texts(b, 'hold on')).toEqual(['hold on']);

  await say(a, 'refuse me');
  const failed = messageWith(a, 'refuse me');
  await expect(failed).toHaveClass(/refused/);
  await expect(failed.locator('.delivery')).toContainText('not sent — retry');
  await expect(failed.locator('.delivery .why')).toHaveText('The server is busy right now. Try again in a moment.');
  expect(await texts(b, 'refuse me')).toEqual([]);
  await failed.locator('button.retry').click();
  await expect(failed).not.toHaveClass(/refused/);
  await expect.poll(() => texts(b, 'refuse me')).toEqual(['refuse me']);
  expect(await texts(a, 'refuse me')).toEqual(['refuse me']);

  // A refused message can also be given up.
  refused = false;
  await say(a, 'refuse me');
  await messageWith(a, 'refuse me').locator('button.discard').click();
  await expect.poll(() => texts(a, 'refuse me')).toEqual(['refuse me']);
  await Promise.all([ada.close(), ben.close()]);
});

test('a message written while the server is out of reach survives a reload and arrives once', async ({ browser, baseURL }) => {
  const room = `offline-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const b = await openRoom(ben, baseURL, room);
  const a = await ada.newPage();
  // While cut off, Ada's socket opens but never reaches the server.
  let cutOff = true;
  await a.routeWebSocket(/\/rt\//, (page) => {
    if (!cutOff) page.connectToServer();
  });
  await a.goto(`${baseURL}/chat/${room}`);
  await expect(a.locator('.connection')).toHaveAttribute('data-status', 'connecting');
  await a.waitForFunction(() => window.__switchboard_hydrated === true);
  await say(a, 'written while cut off');
  await expect(a.locator('.connection')).toContainText('1 waiting to send');
  await expect(messageWith(a, 'written while cut off')).toHaveClass(/sending/);

  cutOff = false;
  await a.reload();
  await expect(a.locator('.connection')).toHaveAttribute('data-status', 'connected');
  await expect.poll(() => texts(b, 'written while')).toEqual(['written while cut off']);
  await expect(messageWith(a, 'written while cut off')).not.toHaveClass(/sending/);
  await expect(a.locator('.connection')).not.toContainText('waiting to send');
  // Sent once: a second reload sends nothing again, and nothing is left waiting.
  await a.reload();
  await expect(a.locator('.connection')).toHaveAttribute('data-status', 'connected');
  expect(await texts(a, 'written while')).toEqual(['written while cut off']);
  expect(await a.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('switchboard.unsent')))).toEqual([]);
  await b.reload();
  await expect.poll(() => texts(b, 'written while')).toEqual(['written while cut off']);
  await Promise.all([ada.close(), ben.close()]);
});
