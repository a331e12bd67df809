// One Xano JS SDK client, unmodified, in its own process (the SDK keeps one socket per
// process). The SDK always dials wss://<instance hostname>/rt/<hash> on port 443. Node 20 has
// no WebSocket of its own, so the `ws` package stands in for the browser's:
// - with SWITCHBOARD_WS set (e.g. ws://127.0.0.1:3100), its constructor is wrapped to dial that
//   plain local server instead;
// - without it, `ws` is used as it is and the SDK dials wss://<XANO_INSTANCE's hostname>/rt/...
//   itself, exactly as in a browser (the parent test provides the server, the name and trust).
// The parent test drives it over IPC.
const WS = require('ws');
const { XanoClient } = require('@xano/js-sdk');

const target = process.env.SWITCHBOARD_WS;
globalThis.WebSocket = target
  ? class extends WS {
    constructor(url, protocols) {
      super(target + new URL(url).pathname, protocols);
    }
  }
  : WS;

const xano = new XanoClient({
  instanceBaseUrl: process.env.XANO_INSTANCE || 'https://switchboard.example',
  realtimeConnectionHash: 'sdk-test',
});
const channel = xano.channel(process.env.CHANNEL || 'room1', { presence: true });
channel.on(
  (action) => process.send({ kind: 'action', action }),
  (error) => process.send({ kind: 'error', error }),
);

process.on('message', (command) => {
  if (command.send !== undefined) channel.message(command.send);
  if (command.presence) {
    process.send({ kind: 'presence', socketIds: channel.getPresence().map((client) => client.socketId) });
  }
  if (command.exit) process.exit(0);
});
