// Typing indicator: "Ada is typing…" for the others (several people summarised), sent on the
// volatile lane at most every 2 s, gone at once when the message is sent and about 5 s after
// the last keystroke.
const { test, expect } = require('@playwright/test');
const { DRAFT, personContext, openRoom } = require('./support/chat');

test('the others see who is typing, until they send or stop', async ({ browser, baseURL }) => {
  const room = `typing-${Date.now()}`;
  const [ada, ben, cy] = await Promise.all([
    personContext(browser, 'Ada', '#e5484d'),
    personContext(browser, 'Ben', '#30a46c'),
    personContext(browser, 'Cy', '#0090ff'),
  ]);
  const a = await openRoom(ada, baseURL, room);
  const b = await openRoom(ben, baseURL, room);
  const c = await openRoom(cy, baseURL, room);
  const pings = [];
  a.on('websocket', (socket) => socket.on('framesent', ({ payload }) => {
    const frame = JSON.parse(payload.toString());
    if (frame.payload && frame.payload.kind === 'typing') pings.push({ at: Date.now(), typing: frame.payload.typing, volatile: frame.options.volatile });
  }));

  await a.locator(DRAFT).pressSequentially('hel');
  await expect(b.locator('.typing')).toHaveText('Ada is typing…');
  await expect(c.locator('.typing')).toHaveText('Ada is typing…');
  await expect(a.locator('.typing')).toHaveText('');
  await c.locator(DRAFT).pressSequentially('yo');
  await expect(b.locator('.typing')).toHaveText(/^(Ada and Cy|Cy and Ada) are typing…$/);

  // Typing on for five seconds sends at most one update every 2 s, all volatile.
  const started = Date.now();
  while (Date.now() - started < 5000) {
    await a.locator(DRAFT).pressSequentially('lo', { delay: 100 });
  }
  const during = pings.filter((p) => p.at >= started && p.typing);
  expect(during.length).toBeLessThanOrEqual(3);
  expect(pings.every((p) => p.volatile === true)).toBe(true);

  // Sending takes Ada off at once.
  await c.locator(DRAFT).pressSequentially('!');
  const last = Date.now();
  await a.press(DRAFT, 'Enter');
  await expect(b.locator('.typing')).toHaveText('Cy is typing…', { timeout: 1000 });

  // Cy goes about 5 s after her last keystroke.
  await expect(b.locator('.typing')).toHaveText('', { timeout: 10_000 });
  const gone = Date.now() - last;
  expect(gone).toBeGreaterThan(4000);
  expect(gone).toBeLessThan(7500);
  await Promise.all([ada.close(), ben.close(), cy.close()]);
});
