// The home page is rendered by the server and then hydrated: its room picker navigates on the
// client only once the wasm took over (before that, the form would submit to /?room=...).
const { test, expect } = require('@playwright/test');

test('home page hydrates and opens the room typed into its picker', async ({ page }) => {
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => msg.type() === 'error' && errors.push(msg.text()));
  await page.goto('/');
  await expect(page.locator('h1')).toHaveText('Switchboard');
  await page.waitForFunction(() => window.__switchboard_hydrated === true);
  await page.fill('#room', 'support');
  await page.click('form.room-picker button');
  await expect(page).toHaveURL(/\/chat\/support$/);
  await expect(page.locator('.chat-header h1')).toHaveText('#support');
  expect(errors).toEqual([]);
});
