// Node flags the router and the connector run with: in deploy/systemd, deploy/windows and the
// Dockerfile, and wherever this project starts them itself (the demo, the test and bench
// stacks). V8 reads them when it sets up the heap, so a running command cannot set them for
// itself (v8.setFlagsFromString then changes nothing); test/unit/node-flags.test.ts checks that
// the deployment files carry them.
//
// --max-semi-space-size=32: a young generation of up to 2 × 32 MB instead of 2 × 16 MB. Both
// processes allocate short-lived objects per request (HTTP parsing, Redis replies, promises), and
// with 100 requests in flight every scavenge copies about the same live set, so fewer of them
// cost less: scavenges were ~15 % of the router's CPU and ~10 % of the connector's at 700 req/s.
// 1 KB sync results, 100 workers, fresh stacks, interleaved rounds of 12 s: router CPU per
// request 1.70-1.71 → 1.46-1.59 ms, 499-517 → 526-581 req/s (32 against 16; 64 gave no more:
// 535-536 req/s). 64 cost the fleet (10,000 event streams) ~80 MB more RSS and a worse ack p99
// (77-102 against 57-82 ms); 32: +15-18 MB, ack p99 71-80 against 80-90 ms. V8 grows the young
// generation only while much of it survives: memory at rest and under streams is unchanged.
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];

/** The commands that run as services and get SERVICE_NODE_FLAGS. */
export const SERVICE_COMMANDS: ReadonlySet<string> = new Set(['router', 'connector']);

/** Node's arguments before bin/relay.js for `relay <command>`. */
export function nodeFlagsFor(command: string | undefined): string[] {
  return command !== undefined && SERVICE_COMMANDS.has(command) ? [...SERVICE_NODE_FLAGS] : [];
}
