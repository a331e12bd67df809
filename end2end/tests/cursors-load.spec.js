// What the board costs the page: with 30 remote cursors each sending 30 updates a second (the
// load generator's cursor mode), the board in headless Chromium keeps at least 55 frames a
// second, counted as requestAnimationFrame callbacks. The figure is in BENCHMARKS.md.
const { test, expect } = require('@playwright/test');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { personContext } = require('./support/chat');

const root = path.resolve(__dirname, '..', '..');
const loadgen = path.join(root, 'target', process.env.SWITCHBOARD_PROFILE || 'debug', 'switchboard-loadgen');
const CURSORS = 30;
const RATE = 30;
const MEASURE_MS = 5000;

// A frame rate measured on a shared 2-core machine (debug server, load generator and Chromium
// together) dips now and then whatever the server does: one of three runs may miss the bound,
// a board that is too slow misses it every time.
test.describe.configure({ retries: 2 });

test('30 remote cursors at 30 updates/s each: the board keeps at least 55 frames per second', async ({ browser, baseURL }, testInfo) => {
  test.setTimeout(120_000);
  expect(fs.existsSync(loadgen), `${loadgen} is missing: cargo build -p switchboard-loadgen`).toBe(true);
  const prefix = `load-${Date.now()}`;
  const viewer = await personContext(browser, 'Ada', '#e5484d', { viewport: { width: 1280, height: 800 } });
  const page = await viewer.newPage();
  page.on('pageerror', (err) => {
    throw err;
  });
  // Counted from the page's own socket, so listened for before the page opens it.
  let received = 0;
  page.on('websocket', (socket) => socket.on('framereceived', () => { received += 1; }));
  await page.goto(`${baseURL}/cursors/${prefix}-0`);
  await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected');

  const run = spawn(loadgen, [
    '--url', `${baseURL.replace(/^http/, 'ws')}/rt/loadgen`, '--duration', '12',
    'cursors', '--rooms', '1', '--users', String(CURSORS), '--rate', String(RATE), '--prefix', prefix,
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  let report = '';
  run.stdout.on('data', (chunk) => { report += chunk; });
  let exited = false;
  const finished = new Promise((resolve) => run.on('exit', (code) => { exited = true; resolve(code); }));
  try {
    await expect(page.locator('.cursor')).toHaveCount(CURSORS, { timeout: 20_000 });
    await page.waitForTimeout(1000);
    const before = received;
    const frames = await page.evaluate((ms) => new Promise((resolve) => {
      let count = 0;
      const start = performance.now();
      const frame = (now) => {
        count += 1;
        if (now - start < ms) requestAnimationFrame(frame);
        else resolve({ count, elapsed: now - start });
      };
      requestAnimationFrame(frame);
    }), MEASURE_MS);
    const fps = (frames.count - 1) / (frames.elapsed / 1000);
    const updates = ((received - before) / (frames.elapsed / 1000));
    expect(await finished).toBe(0);
    const sent = JSON.parse(report).updates_per_s;
    const figure = `${fps.toFixed(1)} frames/s with ${CURSORS} cursors, ${sent.toFixed(0)} updates/s sent, ${updates.toFixed(0)} updates/s received`;
    console.log(`board under load: ${figure}`);
    testInfo.annotations.push({ type: 'fps', description: figure });
    // The full load was offered: 30 cursors at 30 updates a second.
    expect(sent).toBeGreaterThan(CURSORS * RATE * 0.9);
    // The page took most of it. Each update carries a cursor's whole state, so the server may
    // keep only the newest of a sender's updates for a reader that is behind (coalescing): on a
    // busy machine the page sees fewer than were sent, never an old position after a new one.
    expect(updates).toBeGreaterThan(CURSORS * RATE * 0.5);
    expect(fps).toBeGreaterThanOrEqual(55);
  } finally {
    if (!exited) run.kill('SIGTERM');
    await finished;
    await viewer.close();
  }
});
