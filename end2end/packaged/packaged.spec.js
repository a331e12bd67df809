// The release binary as an operator gets it: copied alone into an empty folder, started with
// only a listen address and a certificate, it serves the site it carries over HTTPS — a page
// that hydrates in Chromium and chats over wss:// — with compressed, content-hashed files.
const { test, expect } = require('@playwright/test');
const { say } = require('../tests/support/chat');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { makeCertificates } = require('../tests/support/tls');

const binary = process.env.SWITCHBOARD_PACKAGED_BINARY;
const port = Number(process.env.SWITCHBOARD_PACKAGED_PORT || 3170);
const base = `https://127.0.0.1:${port}`;
const artifacts = path.join(__dirname, '..', 'artifacts');

let server;

test.beforeAll(async () => {
  if (!binary) throw new Error('SWITCHBOARD_PACKAGED_BINARY is not set (scripts/test sets it after scripts/package)');
  const folder = path.dirname(binary);
  expect(fs.readdirSync(folder), 'the binary is alone in its folder').toEqual([path.basename(binary)]);
  const tls = makeCertificates(['localhost', '127.0.0.1']);
  // No LEPTOS_* or site folder: everything the pages need must come from the binary.
  server = spawn(binary, [], {
    cwd: folder,
    env: {
      PATH: process.env.PATH,
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      SWITCHBOARD_TLS_CERT_FILE: tls.cert,
      SWITCHBOARD_TLS_KEY_FILE: tls.key,
      RUST_LOG: 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the packaged binary did not start')), 15_000);
    server.stdout.on('data', (chunk) => {
      if (chunk.toString().includes(`listening on ${base}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    server.on('exit', (code) => reject(new Error(`the packaged binary exited with ${code}`)));
  });
});

test.afterAll(async () => {
  if (server) {
    const exited = new Promise((resolve) => server.on('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
});

test('--help and --version exit 0', () => {
  for (const flag of ['--help', '--version']) {
    const run = spawnSync(binary, [flag], { env: { PATH: process.env.PATH } });
    expect(run.status, `${flag}: ${run.stderr}`).toBe(0);
  }
});

test('a chat page from the binary alone hydrates and talks over wss://', async ({ browser }) => {
  // Chromium has no way to add the test authority; the certificate itself is checked by the
  // Rust and SDK tests.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.addInitScript(() => {
    window.localStorage.setItem('switchboard.user', JSON.stringify({ id: 'user-pat', name: 'Pat', colour: '#3d6cf2' }));
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  const room = `packaged-${Date.now()}`;
  await page.goto(`${base}/chat/${room}`);
  await page.waitForFunction(() => window.__switchboard_hydrated === true);
  await expect(page.locator('.connection')).toHaveAttribute('data-status', 'connected');
  await say(page, 'hello from the tarball');
  await expect(page.locator('.message .text')).toContainText(['hello from the tarball']);
  fs.mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, 'packaged-https.png'), fullPage: true });
  expect(errors).toEqual([]);
  // History goes to ./data under the working folder.
  expect(fs.existsSync(path.join(path.dirname(binary), 'data', 'switchboard.db'))).toBe(true);
  await context.close();
});

test('the site is served compressed, under content-hashed names cached for a year', async ({ playwright }) => {
  const request = await playwright.request.newContext({ ignoreHTTPSErrors: true });
  const html = await (await request.get(`${base}/`)).text();
  const hashed = html.match(/\/pkg\/switchboard\.([0-9a-f]{16})\.wasm/);
  expect(hashed, 'the page loads a hashed wasm file').not.toBeNull();
  const wasm = hashed[0];
  expect(html).toContain(`/pkg/switchboard.${hashed[1]}.js`);
  expect(html).toContain(`/pkg/switchboard.${hashed[1]}.css`);

  const br = await request.get(`${base}${wasm}`, { headers: { 'accept-encoding': 'gzip, br' } });
  expect(br.status()).toBe(200);
  expect(br.headers()['content-encoding']).toBe('br');
  expect(br.headers()['content-type']).toBe('application/wasm');
  expect(br.headers()['cache-control']).toBe('public, max-age=31536000, immutable');
  const gzip = await request.get(`${base}${wasm}`, { headers: { 'accept-encoding': 'gzip' } });
  expect(gzip.headers()['content-encoding']).toBe('gzip');
  const plain = await request.get(`${base}${wasm}`, { headers: { 'accept-encoding': 'identity' } });
  expect(plain.headers()['content-encoding']).toBeUndefined();
  expect([...(await plain.body()).subarray(0, 4)]).toEqual([0x00, 0x61, 0x73, 0x6d]);

  const again = await request.get(`${base}${wasm}`, {
    headers: { 'accept-encoding': 'br', 'if-none-match': br.headers().etag },
  });
  expect(again.status()).toBe(304);

  const icon = await request.get(`${base}/favicon.svg`);
  expect(icon.status()).toBe(200);
  expect(icon.headers()['cache-control']).toBe('public, max-age=300');
  // Only the hashed names exist: a page can never mix an old script with a new wasm.
  expect((await request.get(`${base}/pkg/switchboard.wasm`)).status()).toBe(404);
  await request.dispose();
});
