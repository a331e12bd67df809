// Xano's SDK, unmodified and unwrapped, connecting over wss:// straight to Switchboard
// terminating TLS itself, as it would to a Xano instance.
//
// The SDK always dials wss://<instance hostname>/rt/<hash> on port 443, whatever port the
// instance URL names. So the test server listens on 127.0.0.1:443 with a certificate for
// `localhost`, the instance URL is https://localhost, and Node trusts the test authority
// through NODE_EXTRA_CA_CERTS. Nothing is rewritten between the SDK and the server: the name is
// resolved by the system (/etc/hosts), the certificate is checked as strictly as in production.
// Listening on 443 needs root (or CAP_NET_BIND_SERVICE), which scripts/test has.
const { test, expect } = require('@playwright/test');
const os = require('node:os');
const path = require('node:path');
const { startServer } = require('./support/server');
const { makeCertificates } = require('./support/tls');
const { startPeer, isAction } = require('./support/xano');

test('two unmodified SDK clients talk over wss:// on port 443', async () => {
  test.skip(process.getuid() !== 0, 'listening on port 443 needs root (scripts/test runs as root)');
  const tls = makeCertificates(['localhost']);
  const history = path.join(os.tmpdir(), `switchboard-e2e-sdk-tls-${process.pid}`, 'history.db');
  const server = startServer(443, history, {
    SWITCHBOARD_TLS_CERT_FILE: tls.cert,
    SWITCHBOARD_TLS_KEY_FILE: tls.key,
  });
  await server.ready;
  const peerEnv = {
    XANO_INSTANCE: 'https://localhost',
    NODE_EXTRA_CA_CERTS: tls.ca,
    // localhost may resolve to ::1 first on some systems; the server listens on 127.0.0.1.
    NODE_OPTIONS: '--dns-result-order=ipv4first',
  };
  const alice = startPeer(peerEnv);
  let bob;
  try {
    const aliceFull = await alice.waitFor(isAction('presence_full'), 'alice presence_full over wss');
    const aliceId = aliceFull.action.payload.presence[0].socketId;
    bob = startPeer(peerEnv);
    await bob.waitFor(
      (e) => isAction('presence_full')(e) && e.action.payload.presence.length === 2,
      'bob presence_full listing both',
    );
    bob.send({ send: { text: 'hello over wss' } });
    const received = await alice.waitFor(isAction('message'), 'alice receiving the message');
    expect(received.action.payload).toEqual({ text: 'hello over wss' });
    expect(received.action.client.socketId).not.toBe(aliceId);
    for (const peer of [alice, bob]) {
      expect(peer.seen.filter((e) => e.kind === 'error')).toEqual([]);
    }
  } finally {
    alice.child.kill();
    bob?.child.kill();
    await server.stop();
  }
});
