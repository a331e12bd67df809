// Two Switchboard nodes on one Redis, as behind a load balancer: people on different nodes
// chat in one room, see one presence list, and a reload through the other node shows the
// shared history.
const { test, expect } = require('@playwright/test');
const { personContext, openRoom, say, texts } = require('./support/chat');
const { startServer, startRedis } = require('./support/server');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

// Beside the main test server's port, so runs on different ports never share a node or Redis.
const base = Number(process.env.SWITCHBOARD_E2E_PORT || 3100);

test('people on two nodes share messages, presence and history', async ({ browser }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-redis-'));
  const redis = startRedis(base + 90, dir);
  await redis.ready;
  const cluster = {
    SWITCHBOARD_ENGINE: 'redis',
    SWITCHBOARD_REDIS_URL: redis.url,
    SWITCHBOARD_REDIS_PREFIX: `e2e-${Date.now()}`,
  };
  const nodes = [
    startServer(base + 3, path.join(dir, 'a.db'), cluster),
    startServer(base + 4, path.join(dir, 'b.db'), cluster),
  ];
  try {
    await Promise.all(nodes.map((node) => node.ready));
    const ada = await personContext(browser, 'Ada', '#e5484d');
    const ben = await personContext(browser, 'Ben', '#30a46c');
    const onA = await openRoom(ada, nodes[0].url, 'lobby');
    const onB = await openRoom(ben, nodes[1].url, 'lobby');
    for (const page of [onA, onB]) {
      await expect(page.locator('.presence h2')).toHaveText('Here now · 2');
    }

    const run = `run-${Date.now()}`;
    await say(onA, `${run} hello from node A`);
    await expect.poll(() => texts(onB, run)).toEqual([`${run} hello from node A`]);
    await say(onB, `${run} and back from node B`);
    const expected = [`${run} hello from node A`, `${run} and back from node B`];
    for (const page of [onA, onB]) {
      await expect.poll(() => texts(page, run)).toEqual(expected);
    }

    // Ben's next visit lands on the other node: the page it renders already holds the history.
    const html = await (await fetch(`${nodes[0].url}/chat/lobby`)).text();
    for (const text of expected) expect(html).toContain(text);
    await onB.close();
    await expect(onA.locator('.presence h2')).toHaveText('Here now · 1');
    const again = await openRoom(ben, nodes[0].url, 'lobby');
    await expect.poll(() => texts(again, run)).toEqual(expected);
    await expect(onA.locator('.presence h2')).toHaveText('Here now · 2');
    await Promise.all([ada.close(), ben.close()]);
  } finally {
    await Promise.all(nodes.map((node) => node.stop().catch(() => {})));
    await redis.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
