import http from 'node:http';
import net from 'node:net';
const server = http.createServer(async (req, res) => {
  req.resume();
  await new Promise((r) => setTimeout(r, 300));
  console.log('res.destroyed', res.destroyed, 'res.closed', res.closed, 'socket', res.socket && res.socket.destroyed, 'req.destroyed', req.destroyed, 'writableEnded', res.writableEnded);
  let closeFired = false; res.on('close', () => (closeFired = true));
  const ok = res.write('hello');
  setTimeout(() => { console.log('write returned', ok, 'close fired after attach', closeFired); process.exit(0); }, 200);
});
server.listen(0, '127.0.0.1', () => {
  const s = net.connect(server.address().port, '127.0.0.1', () => {
    s.write('POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n{}');
    setTimeout(() => s.destroy(), 50);
  });
});
