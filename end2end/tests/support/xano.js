// Runs Xano SDK clients (support/xano-peer.cjs), each in a process of its own, and lets a test
// wait for the events they report.
const { fork } = require('node:child_process');
const path = require('node:path');

const peerScript = path.join(__dirname, 'xano-peer.cjs');

// A peer with extra environment variables (SWITCHBOARD_WS, or XANO_INSTANCE and trust).
function startPeer(env) {
  const child = fork(peerScript, [], { env: { ...process.env, ...env } });
  const seen = [];
  const waiters = [];
  child.on('message', (event) => {
    seen.push(event);
    for (const waiter of [...waiters]) {
      if (waiter.match(event)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(event);
      }
    }
  });
  const waitFor = (match, what, ms = 10_000) =>
    new Promise((resolve, reject) => {
      const found = seen.find(match);
      if (found) return resolve(found);
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      waiters.push({ match, resolve: (e) => { clearTimeout(timer); resolve(e); } });
    });
  return { child, seen, waitFor, send: (command) => child.send(command) };
}

const isAction = (name) => (event) => event.kind === 'action' && event.action.action === name;

module.exports = { startPeer, isAction };
