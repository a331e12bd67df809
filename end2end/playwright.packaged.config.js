// The packaged binary (scripts/package), copied alone into an empty folder: scripts/test runs
// these tests with SWITCHBOARD_PACKAGED_BINARY naming that copy. Nothing is started here; the
// tests start the binary themselves, with an environment that carries no project settings.
const base = require('./playwright.config.js');

module.exports = {
  ...base,
  testDir: './packaged',
  webServer: undefined,
  use: { ...base.use, baseURL: undefined },
};
