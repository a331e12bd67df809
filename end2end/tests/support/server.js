// Starts and stops a Switchboard server of the test's own (for tests that restart it), on a
// fixed loopback port, serving the site that `cargo leptos build` produced.
const { spawn } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..', '..');

// A server on `port` keeping history in `historyPath` (restart it on the same path to keep it),
// with extra environment variables (e.g. SWITCHBOARD_CONFIG).
function startServer(port, historyPath, extraEnv = {}) {
  const binary = path.join(root, 'target', process.env.SWITCHBOARD_PROFILE || 'debug', 'switchboard');
  const child = spawn(binary, [], {
    cwd: root,
    env: {
      ...process.env,
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: path.join(root, 'target', 'site'),
      LEPTOS_OUTPUT_NAME: process.env.LEPTOS_OUTPUT_NAME || 'switchboard',
      SWITCHBOARD_HISTORY_PATH: historyPath,
      RUST_LOG: 'warn',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server on ${port} did not start`)), 15_000);
    child.stdout.on('data', (chunk) => {
      if (chunk.toString().includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code} before listening`)));
  });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    ready,
    url: `http://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
    // Kills it at once (SIGKILL), as a crash would.
    async kill() {
      child.kill('SIGKILL');
      return exited;
    },
  };
}

// A redis-server of the test's own on `port`, keeping its data in `dir`; stopped with stop().
function startRedis(port, dir) {
  const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server on ${port} did not start`)), 10_000);
    child.stdout.on('data', (chunk) => {
      if (chunk.toString().includes('Ready to accept')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('error', (err) => reject(new Error(`cannot run redis-server (${err.message}): run scripts/setup`)));
    child.on('exit', (code) => reject(new Error(`redis-server exited with ${code} before it was ready`)));
  });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    ready,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

module.exports = { startServer, startRedis };
