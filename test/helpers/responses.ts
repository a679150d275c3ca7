// Server responses in the states a route can find them in, on real loopback sockets.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A response whose client has already gone ('close' has come and gone), as a route sees it
 * after an await. `stop` closes the server.
 */
export async function closedResponse(): Promise<{ res: ServerResponse; stop: () => void }> {
  let resolveRes!: (res: ServerResponse) => void;
  const gotRes = new Promise<ServerResponse>((r) => (resolveRes = r));
  const server = createServer((req, res) => {
    req.resume();
    resolveRes(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const ac = new AbortController();
  const answer = fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { signal: ac.signal }).catch(() => undefined);
  const res = await gotRes;
  const closed = new Promise((r) => res.on('close', r));
  ac.abort();
  await answer;
  await closed;
  return { res, stop: () => server.close() };
}
