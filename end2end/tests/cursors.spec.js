// Live cursors across tabs: positions agree across window sizes, a closed tab's cursor goes at
// once, and chat in the same room is not disturbed by cursor traffic.
const { test, expect } = require('@playwright/test');
const { personContext, say, texts } = require('./support/chat');

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
