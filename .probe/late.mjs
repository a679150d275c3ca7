import http from 'node:http';
import net from 'node:net';
import { readBody, bodyReads } from '../dist/src/router/http.js';
bodyReads.idleMs = 3000;
const server = http.createServer(async (req, res) => {
  await new Promise((r) => setTimeout(r, 500)); // like admitWithin waiting for room
  console.log('handler resumes: destroyed', req.destroyed, 'aborted', req.aborted, 'complete', req.complete, 'socket destroyed', req.socket.destroyed);
  const t0 = Date.now();
  try { const b = await readBody(req, 1 << 20); console.log('body', b.length); }
  catch (e) { console.log('readBody rejected after', Date.now() - t0, 'ms:', e.message); }
  res.end('x');
});
server.requestTimeout = 0;
server.on('clientError', (err, socket) => { console.log('clientError', err.code); socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'); });
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  for (const mode of process.argv.slice(2)) {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write('POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\n' + 'a'.repeat(400));
      setTimeout(() => (mode === 'fin' ? s.end() : s.resetAndDestroy()), 100);
    });
    s.on('error', () => {});
  }
  setTimeout(() => process.exit(0), 5000);
});
