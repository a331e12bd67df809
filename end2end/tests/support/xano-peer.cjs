// One Xano JS SDK client, unmodified, in its own process (the SDK keeps one socket per
// process). The SDK always dials wss://<host>/rt/<hash>; the WebSocket constructor it uses is
// wrapped to dial the local server instead. The parent test drives it over IPC.
const WS = require('ws');
const { XanoClient } = require('@xano/js-sdk');

const target = process.env.SWITCHBOARD_WS; // e.g. ws://127.0.0.1:3100
globalThis.WebSocket = class extends WS {
  constructor(url, protocols) {
    super(target + new URL(url).pathname, protocols);
  }
};

const xano = new XanoClient({
  instanceBaseUrl: 'https://switchboard.example',
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
