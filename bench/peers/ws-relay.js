// The Node peer: npm `ws`, the usual broadcast loop. Every text message a client sends is
// relayed to every client in its room (`/room/<name>`), the sender included.
// `node ws-relay.js --listen 127.0.0.1:0` prints `listening on ADDR` once ready.
const { WebSocketServer } = require('ws');

const listen = process.argv[process.argv.indexOf('--listen') + 1] || '127.0.0.1:0';
const [host, port] = listen.split(':');
const rooms = new Map();
const wss = new WebSocketServer({ host, port: Number(port), perMessageDeflate: false });

wss.on('connection', (socket, request) => {
  socket._socket.setNoDelay(true);
  const room = (request.url || '').replace(/^\/room\//, '');
  if (!rooms.has(room)) rooms.set(room, new Set());
  const members = rooms.get(room);
  members.add(socket);
  socket.on('message', (data, isBinary) => {
    if (isBinary) return;
    for (const member of members) {
      if (member.readyState === 1) member.send(data, { binary: false });
    }
  });
  socket.on('close', () => members.delete(socket));
  socket.on('error', () => members.delete(socket));
});

wss.on('listening', () => {
  const a = wss.address();
  console.log(`listening on ${a.address}:${a.port}`);
});
