// Room broadcast on Node's `ws`, the way people write it: {"join": room} to join,
// {"room": room, "data": payload} to send the payload to everyone in the room.
const { WebSocketServer } = require('ws');
const rooms = new Map();
const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.env.PORT || 3300) });
wss.on('connection', (socket) => {
  socket.on('message', (raw) => {
    const frame = JSON.parse(raw);
    if (frame.join) {
      if (!rooms.has(frame.join)) rooms.set(frame.join, new Set());
      rooms.get(frame.join).add(socket);
      socket.on('close', () => rooms.get(frame.join).delete(socket));
    } else if (frame.room) {
      const text = JSON.stringify(frame.data);
      for (const member of rooms.get(frame.room) || []) member.send(text);
    }
  });
});
wss.on('listening', () => console.log(`ws peer listening on ${process.env.PORT || 3300}`));
