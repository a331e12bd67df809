// The home page is rendered by the server and then hydrated: its control only works once the
// wasm client took over.
const { test, expect } = require('@playwright/test');

test('home page hydrates and its button responds', async ({ page }) => {
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto('/');
  await expect(page.locator('h1')).toHaveText('Switchboard');
  await expect(page.locator('.status')).toHaveAttribute('data-hydrated', 'true');
  const button = page.locator('button.ping');
  await button.click();
  await button.click();
  await expect(button).toHaveText('Pinged 2 times');
  expect(errors).toEqual([]);
});
