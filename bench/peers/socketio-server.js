// Room broadcast on Socket.IO, the way people write it: emit "join" with a room, emit "msg"
// with a room and a payload to send it to everyone in the room.
const http = require('node:http');
const { Server } = require('socket.io');
const port = Number(process.env.PORT || 3301);
const server = http.createServer();
const io = new Server(server, { transports: ['websocket'], serveClient: false });
io.on('connection', (socket) => {
  socket.on('join', (room) => socket.join(room));
  socket.on('msg', (room, data) => io.to(room).emit('msg', data));
});
server.listen(port, '127.0.0.1', () => console.log(`socket.io peer listening on ${port}`));
