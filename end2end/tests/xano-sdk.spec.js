// Xano's official JS SDK (@xano/js-sdk from npm, unmodified) talks to Switchboard: two SDK
// clients in room1 see each other's presence and exchange a message.
const { test, expect } = require('@playwright/test');
const { startPeer, isAction } = require('./support/xano');

test('two SDK clients in room1 see each other and exchange a message', async ({ baseURL }) => {
  const wsBase = baseURL.replace(/^http/, 'ws');
  const alice = startPeer({ SWITCHBOARD_WS: wsBase });
  let bob;
  try {
    const aliceFull = await alice.waitFor(isAction('presence_full'), 'alice presence_full');
    expect(aliceFull.action.payload.presence).toHaveLength(1);
    const aliceId = aliceFull.action.payload.presence[0].socketId;
    bob = startPeer({ SWITCHBOARD_WS: wsBase });
    const bobFull = await bob.waitFor(
      (e) => isAction('presence_full')(e) && e.action.payload.presence.length === 2,
      'bob presence_full listing both',
    );
    const joined = await alice.waitFor(
      (e) => isAction('presence_update')(e) && e.action.payload.action === 'join',
      'alice hearing bob join',
    );
    const bobId = joined.action.payload.presence.socketId;
    expect(bobFull.action.payload.presence.map((c) => c.socketId).sort()).toEqual([aliceId, bobId].sort());

    alice.send({ presence: true });
    const alicePresence = await alice.waitFor((e) => e.kind === 'presence', 'alice presence list');
    expect(alicePresence.socketIds.sort()).toEqual([aliceId, bobId].sort());

    alice.send({ send: { text: 'hello from the SDK' } });
    const received = await bob.waitFor(isAction('message'), 'bob receiving the message');
    expect(received.action.payload).toEqual({ text: 'hello from the SDK' });
    expect(received.action.options.channel).toBe('room1');
    expect(received.action.client.socketId).toBe(aliceId);

    // No frames the SDK does not know, and no errors.
    const known = new Set(['connection_status', 'presence_full', 'presence_update', 'message']);
    for (const peer of [alice, bob]) {
      expect(peer.seen.filter((e) => e.kind === 'error')).toEqual([]);
      const actions = peer.seen.filter((e) => e.kind === 'action').map((e) => e.action.action);
      expect(actions.filter((a) => !known.has(a))).toEqual([]);
    }

    bob.send({ exit: true });
    const left = await alice.waitFor(
      (e) => isAction('presence_update')(e) && e.action.payload.action === 'leave',
      'alice hearing bob leave',
    );
    expect(left.action.payload.presence.socketId).toBe(bobId);
  } finally {
    alice.child.kill();
    bob?.child.kill();
  }
});
