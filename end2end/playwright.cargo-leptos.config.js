// For `cargo leptos end-to-end` (Leptos.toml's end2end-cmd): cargo-leptos builds the site and
// starts the server itself on Leptos.toml's site address, then runs these tests. They use that
// one server; playwright.config.js, used everywhere else, starts a server of its own instead.
const fs = require('node:fs');
const path = require('node:path');
const base = require('./playwright.config.js');

// The address cargo-leptos serves on: LEPTOS_SITE_ADDR when set (it wins there too), else
// Leptos.toml's site-addr.
function siteAddr() {
  if (process.env.LEPTOS_SITE_ADDR) return process.env.LEPTOS_SITE_ADDR;
  const text = fs.readFileSync(path.join(__dirname, '..', 'Leptos.toml'), 'utf8');
  const found = text.match(/^site-addr\s*=\s*"([^"]+)"/m);
  if (!found) throw new Error('Leptos.toml names no site-addr');
  return found[1];
}

const url = `http://${siteAddr()}`;

module.exports = {
  ...base,
  use: { ...base.use, baseURL: url },
  // cargo-leptos may still be starting its server when the tests begin: wait for it to answer
  // rather than start another (the command only keeps Playwright waiting; it serves nothing).
  webServer: {
    command: 'node -e "setInterval(() => {}, 1 << 30)"',
    url: `${url}/healthz`,
    reuseExistingServer: true,
    timeout: 60_000,
  },
};
