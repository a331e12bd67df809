// Live cursors across tabs: positions agree across window sizes, a closed tab's cursor goes at
// once, chat in the same room is not disturbed by cursor traffic, cursors glide rather than
// jump, people are listed with what they are doing, cursor chat, and touch and pen pointers.
const { test, expect } = require('@playwright/test');
const { personContext, say, texts } = require('./support/chat');
const { joinAsPeer, sleep } = require('./support/peer');

async function openBoard(context, base, room) {
  const page = await context.newPage();
  page.on('pageerror', (err) => {
    throw err;
  });
  await page.goto(`${base}/cursors/${room}`);
  await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected');
  return page;
}

// Moves the mouse to a fraction of the board, in steps as a hand would.
async function pointAt(page, fx, fy) {
  const box = await page.locator('.cursor-canvas').boundingBox();
  await page.mouse.move(box.x + fx * box.width, box.y + fy * box.height, { steps: 8 });
}

// Where the tip of `name`'s cursor is drawn, as a fraction of the board.
async function drawnAt(page, name) {
  const board = await page.locator('.cursor-canvas').boundingBox();
  const mark = await page.locator(`.cursor[data-name="${name}"]`).boundingBox();
  if (!board || !mark) return null;
  return { x: (mark.x - board.x) / board.width, y: (mark.y - board.y) / board.height, board };
}

function near(position, fx, fy, pixels = 3) {
  return (
    position !== null &&
    Math.abs(position.x - fx) * position.board.width <= pixels &&
    Math.abs(position.y - fy) * position.board.height <= pixels
  );
}

test('each tab sees the others move, in the right place, and closed tabs vanish', async ({ browser, baseURL }, testInfo) => {
  const room = `board-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const cy = await personContext(browser, 'Cy', '#0090ff');
  const a = await openBoard(ada, baseURL, room);
  await a.setViewportSize({ width: 1200, height: 800 });
  const b = await openBoard(ben, baseURL, room);
  await b.setViewportSize({ width: 800, height: 600 });
  const c = await openBoard(cy, baseURL, room);
  await expect(a.locator('.here')).toHaveText('3 here');

  await pointAt(b, 0.3, 0.6);
  await pointAt(c, 0.8, 0.25);
  await expect.poll(async () => near(await drawnAt(a, 'Ben'), 0.3, 0.6)).toBe(true);
  await expect.poll(async () => near(await drawnAt(a, 'Cy'), 0.8, 0.25)).toBe(true);
  await expect.poll(async () => near(await drawnAt(b, 'Cy'), 0.8, 0.25)).toBe(true);
  // Nobody's own cursor is drawn on their own board.
  await expect(a.locator('.cursor[data-name="Ada"]')).toHaveCount(0);
  await expect(b.locator('.cursor[data-name="Ben"]')).toHaveCount(0);

  await pointAt(b, 0.55, 0.4);
  await expect.poll(async () => near(await drawnAt(a, 'Ben'), 0.55, 0.4)).toBe(true);
  await a.screenshot({ path: testInfo.outputPath('cursors.png') });

  // A cursor whose person stopped moving fades after a few seconds; moving brings it back.
  await expect(a.locator('.cursor[data-name="Cy"]')).toHaveClass(/stale/, { timeout: 8_000 });
  await pointAt(c, 0.7, 0.7);
  await expect(a.locator('.cursor[data-name="Cy"]')).not.toHaveClass(/stale/);

  await cy.close();
  await expect(a.locator('.cursor[data-name="Cy"]')).toHaveCount(0);
  await expect(b.locator('.cursor[data-name="Cy"]')).toHaveCount(0);
  await ada.close();
  await ben.close();
});

test('chat and cursors in the same room do not interfere', async ({ browser, baseURL }) => {
  const room = `mixed-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const board = await openBoard(ada, baseURL, room);
  const mover = await openBoard(ben, baseURL, room);
  const chatA = await ada.newPage();
  await chatA.goto(`${baseURL}/chat/${room}`);
  await expect(chatA.locator('.connection')).toHaveAttribute('data-status', 'connected');
  const chatB = await ben.newPage();
  await chatB.goto(`${baseURL}/chat/${room}`);
  await expect(chatB.locator('.connection')).toHaveAttribute('data-status', 'connected');

  const moving = (async () => {
    for (let i = 0; i < 20; i++) await pointAt(mover, 0.1 + i * 0.04, 0.5);
  })();
  for (let n = 1; n <= 5; n++) await say(chatA, `while moving ${n}`);
  await moving;

  const expected = [1, 2, 3, 4, 5].map((n) => `while moving ${n}`);
  await expect.poll(() => texts(chatB, 'while moving')).toEqual(expected);
  await expect.poll(async () => near(await drawnAt(board, 'Ben'), 0.1 + 19 * 0.04, 0.5)).toBe(true);
  // Cursor updates are never stored: a reload of the chat shows only the chat.
  await chatB.reload();
  await expect.poll(() => texts(chatB, 'while moving')).toEqual(expected);
  await expect(chatB.locator('.message')).toHaveCount(5);
  await ada.close();
  await ben.close();
});

// Where `name`'s cursor is drawn on every animation frame for `ms`, as fractions of the board.
function trackPositions(page, name, ms) {
  return page.evaluate(([name, ms]) => new Promise((resolve) => {
    const board = document.querySelector('.cursor-canvas');
    const samples = [];
    const end = performance.now() + ms;
    const frame = () => {
      const mark = document.querySelector(`.cursor[data-name="${name}"]`);
      if (mark) {
        const b = board.getBoundingClientRect();
        const m = mark.getBoundingClientRect();
        samples.push({ x: (m.left - b.left) / b.width, y: (m.top - b.top) / b.height, width: b.width });
      }
      if (performance.now() < end) requestAnimationFrame(frame);
      else resolve(samples);
    };
    requestAnimationFrame(frame);
  }), [name, ms]);
}

test('remote cursors glide along a path through the points, not jumping from one to the next', async ({ browser, baseURL }) => {
  const room = `glide-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const calm = await personContext(browser, 'Ben', '#30a46c', { reducedMotion: 'reduce' });
  const a = await openBoard(ada, baseURL, room);
  const c = await openBoard(calm, baseURL, room);
  const pia = await joinAsPeer(baseURL, room, { id: 'user-pia', name: 'Pia', colour: '#d6409f' });
  pia.point(0.1, 0.5);
  await expect(a.locator('.cursor[data-name="Pia"]')).toHaveCount(1);
  await expect.poll(async () => near(await drawnAt(a, 'Pia'), 0.1, 0.5)).toBe(true);

  // 20 updates a second, 0.02 of the board apart, left to right.
  const sent = [];
  const tracking = Promise.all([trackPositions(a, 'Pia', 2600), trackPositions(c, 'Pia', 2600)]);
  for (let i = 1; i <= 40; i++) {
    sent.push(0.1 + i * 0.02);
    pia.point(sent[sent.length - 1], 0.5);
    await sleep(50);
  }
  const [smooth, jumps] = await tracking;
  const moving = smooth.filter((s) => s.x > 0.1005 && s.x < 0.8995);
  const steps = moving.slice(1).map((s, i) => s.x - moving[i].x);
  // Frame after frame the cursor moves on a little, never back, far less than a whole step.
  expect(moving.length).toBeGreaterThan(sent.length);
  expect(new Set(moving.map((s) => s.x.toFixed(4))).size).toBeGreaterThan(sent.length);
  expect(Math.min(...steps)).toBeGreaterThan(-0.001);
  const median = [...steps].sort((x, y) => x - y)[Math.floor(steps.length / 2)];
  expect(median).toBeLessThan(0.012);
  expect(moving.every((s) => Math.abs(s.y - 0.5) * s.width < 1)).toBe(true);
  // Asking the system for less motion: the cursor is only ever where an update put it.
  const points = [0.1, ...sent];
  for (const sample of jumps) {
    expect(points.some((x) => Math.abs(x - sample.x) * sample.width < 1.5)).toBe(true);
  }
  for (const page of [a, c]) {
    await expect.poll(async () => near(await drawnAt(page, 'Pia'), 0.9, 0.5)).toBe(true);
  }
  pia.close();
  await Promise.all([ada.close(), calm.close()]);
});

test('the people on the board are listed with their colour and state: active, idle, away', async ({ browser, baseURL }) => {
  const room = `people-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const a = await openBoard(ada, baseURL, room);
  const b = await openBoard(ben, baseURL, room);
  const benInList = a.locator('.board-people .person[data-user="user-ben"]');
  await expect(a.locator('.board-people .person[data-user="user-ada"]')).toContainText('Ada (you)');
  await expect(benInList.locator('.dot')).toHaveCSS('background-color', 'rgb(48, 164, 108)');
  await pointAt(b, 0.4, 0.4);
  await expect(benInList).toHaveAttribute('data-activity', 'active');
  await expect(benInList.locator('.activity')).toHaveText('active');
  const mark = a.locator('.cursor[data-name="Ben"]');
  await expect(mark).not.toHaveClass(/stale/);

  // Quiet for 3 s: idle, the cursor dimmed.
  await expect(benInList).toHaveAttribute('data-activity', 'idle', { timeout: 6000 });
  await expect(mark).toHaveClass(/stale/);
  await expect(mark).toBeVisible();
  // Quiet for a minute (Ada's clock jumps ahead): away, the cursor hidden.
  await a.clock.setFixedTime(Date.now() + 61_000);
  await expect(benInList).toHaveAttribute('data-activity', 'away');
  await expect(mark).toBeHidden();
  // Moving again brings him back.
  await pointAt(b, 0.6, 0.5);
  await expect(benInList).toHaveAttribute('data-activity', 'active');
  await expect(mark).toBeVisible();
  await expect(mark).not.toHaveClass(/stale/);
  await Promise.all([ada.close(), ben.close()]);
});

test('cursor chat: / opens it, the others see it beside the cursor, Escape cancels, it goes 5 s after typing stops', async ({ browser, baseURL }) => {
  const room = `cursor-chat-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const ben = await personContext(browser, 'Ben', '#30a46c');
  const a = await openBoard(ada, baseURL, room);
  const b = await openBoard(ben, baseURL, room);
  await pointAt(b, 0.4, 0.4);
  const bubble = a.locator('.cursor[data-name="Ben"] .cursor-chat');

  await b.keyboard.press('/');
  const input = b.locator('.cursor-chat-input');
  await expect(input).toBeFocused();
  await input.pressSequentially('hello there');
  await expect(bubble).toHaveText('hello there');
  // A short message is one line just below and right of the arrow, not a column down the board.
  const arrow = await a.locator('.cursor[data-name="Ben"] svg').boundingBox();
  const box = await bubble.boundingBox();
  expect(box.height).toBeLessThan(40);
  expect(box.width).toBeGreaterThan(box.height);
  expect(box.x - arrow.x).toBeGreaterThan(0);
  expect(box.x - arrow.x).toBeLessThan(40);
  expect(box.y - arrow.y).toBeLessThan(60);
  await input.press('Escape');
  await expect(input).toHaveCount(0);
  await expect(bubble).toHaveCount(0);

  // At most 64 characters, for the writer and the readers.
  await b.keyboard.press('/');
  await b.locator('.cursor-chat-input').fill('x'.repeat(80));
  await expect(b.locator('.cursor-chat-input')).toHaveValue('x'.repeat(64));
  await expect(bubble).toHaveText('x'.repeat(64));
  await b.locator('.cursor-chat-input').fill('');
  await expect(bubble).toHaveCount(0);

  // It goes about 5 s after the last keystroke, and follows the cursor meanwhile.
  await b.locator('.cursor-chat-input').pressSequentially('brb');
  const last = Date.now();
  await pointAt(b, 0.6, 0.6);
  await expect(bubble).toHaveText('brb');
  await expect.poll(async () => near(await drawnAt(a, 'Ben'), 0.6, 0.6)).toBe(true);
  await expect(bubble).toHaveCount(0, { timeout: 9000 });
  const gone = Date.now() - last;
  expect(gone).toBeGreaterThan(4000);
  expect(gone).toBeLessThan(7500);
  await expect(b.locator('.cursor-chat-input')).toHaveCount(0);
  await Promise.all([ada.close(), ben.close()]);
});

test('a touch screen and a pen show their point as a cursor', async ({ browser, baseURL }) => {
  const room = `touch-${Date.now()}`;
  const ada = await personContext(browser, 'Ada', '#e5484d');
  const phone = await personContext(browser, 'Ben', '#30a46c', { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });
  const tablet = await personContext(browser, 'Cy', '#0090ff', { viewport: { width: 820, height: 1180 } });
  const a = await openBoard(ada, baseURL, room);
  const b = await openBoard(phone, baseURL, room);
  const c = await openBoard(tablet, baseURL, room);

  const at = async (page, fx, fy) => {
    const box = await page.locator('.cursor-canvas').boundingBox();
    return { x: box.x + fx * box.width, y: box.y + fy * box.height };
  };
  const finger = await phone.newCDPSession(b);
  let point = await at(b, 0.3, 0.7);
  await finger.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [point] });
  await expect.poll(async () => near(await drawnAt(a, 'Ben'), 0.3, 0.7)).toBe(true);
  point = await at(b, 0.5, 0.2);
  await finger.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [point] });
  await expect.poll(async () => near(await drawnAt(a, 'Ben'), 0.5, 0.2)).toBe(true);
  await finger.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });

  const pen = await tablet.newCDPSession(c);
  for (const [fx, fy] of [[0.2, 0.2], [0.25, 0.3], [0.7, 0.8]]) {
    const p = await at(c, fx, fy);
    await pen.send('Input.dispatchMouseEvent', { type: 'mouseMoved', x: p.x, y: p.y, pointerType: 'pen' });
  }
  await expect.poll(async () => near(await drawnAt(a, 'Cy'), 0.7, 0.8)).toBe(true);
  await Promise.all([ada.close(), phone.close(), tablet.close()]);
});
