// Browser tests drive Debian's Chromium (never a downloaded browser) against the real server
// binary that `cargo leptos build` produced, serving the site it built.
const { defineConfig } = require('@playwright/test');
const path = require('node:path');

const os = require('node:os');

const root = path.resolve(__dirname, '..');
// Each run gets its own history file, so runs never see each other's messages.
const history = path.join(os.tmpdir(), `switchboard-e2e-${process.pid}`, 'history.db');
const port = Number(process.env.SWITCHBOARD_E2E_PORT || 3100);

module.exports = defineConfig({
  testDir: './tests',
  timeout: 60_000,
  fullyParallel: false,
  workers: 1,
  reporter: [['list']],
  outputDir: './test-results',
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    browserName: 'chromium',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
    trace: 'off',
    screenshot: 'only-on-failure',
  },
  webServer: {
    command: path.join(root, 'target', process.env.SWITCHBOARD_PROFILE || 'debug', 'switchboard'),
    cwd: root,
    url: `http://127.0.0.1:${port}/healthz`,
    reuseExistingServer: false,
    timeout: 30_000,
    stdout: 'pipe',
    env: {
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: path.join(root, 'target', 'site'),
      LEPTOS_OUTPUT_NAME: process.env.LEPTOS_OUTPUT_NAME || 'switchboard',
      SWITCHBOARD_HISTORY_PATH: history,
      RUST_LOG: 'warn',
    },
  },
});
