// A round-robin TCP balancer in front of several routers, as a load balancer would be: each new
// connection goes to the next target; a target that refuses closes that connection (the
// client's retry takes the next one).
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export interface Balancer {
  url: string;
  /** Cuts every open connection (both sides). */
  cutAll(): void;
  close(): Promise<void>;
}

export async function startBalancer(targets: string[]): Promise<Balancer> {
  let next = 0;
  const open = new Set<Socket>();
  const server = createServer((down) => {
    const { hostname, port } = new URL(targets[next++ % targets.length]!);
    const up = connect(Number(port), hostname);
    for (const s of [down, up]) {
      open.add(s);
      s.on('close', () => open.delete(s));
    }
    down.pipe(up).pipe(down);
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cutAll: () => open.forEach((s) => s.destroy()),
    close: () =>
      new Promise<void>((r) => {
        open.forEach((s) => s.destroy());
        server.close(() => r());
      }),
  };
}
