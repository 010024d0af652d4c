// The Node `ws` broadcast server opsdash-load's peers scenario compares
// opsdash with: every POST /publish body goes to every WebSocket client.
const http = require('http');
const { WebSocketServer } = require('ws');
const server = http.createServer((req, res) => {
  if (req.method !== 'POST') { res.writeHead(req.url === '/health' ? 200 : 404); return res.end(); }
  const body = [];
  req.on('data', (c) => body.push(c)).on('end', () => {
    const msg = Buffer.concat(body).toString();
    for (const c of wss.clients) c.send(msg);
    res.writeHead(200); res.end();
  });
});
const wss = new WebSocketServer({ server });
server.listen(Number(process.argv[2]), '127.0.0.1');
