// Node flags the router and the connector run with: in deploy/systemd, deploy/windows and the
// Dockerfile, and wherever this project starts them itself (the demo, the test and bench
// stacks). V8 reads them when it sets up the heap, so a running command cannot set them for
// itself (v8.setFlagsFromString then changes nothing); test/unit/node-flags.test.ts checks that
// the deployment files carry them.
//
// --max-semi-space-size=64: a young generation of up to 2 × 64 MB instead of 2 × 16 MB. Both
// processes allocate short-lived objects per request (HTTP parsing, Redis replies, promises), and
// with 100 requests in flight every scavenge copies about the same live set, so fewer of them
// cost less: scavenges were ~15 % of the router's CPU and ~10 % of the connector's at 700 req/s.
// 1 KB sync results, 100 workers, fresh stacks, 4 interleaved pairs of 12 s: router CPU per
// request 1.24-1.49 → 1.16-1.20 ms, connector 0.69-0.96 → 0.67-0.72 ms, 520-550 → 584-684 req/s
// (bench `small`, 2 pairs: 679 → 905 and 551 → 688 req/s). V8 grows the young generation only while much of it survives, so memory at rest and
// under streams stayed the same (bench `memory`: stream growth 10.4 → 2.0 MB, offload 1.2 → 1.9,
// 10 syncs' peak 230 → 229 MB).
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64'];

/** The commands that run as services and get SERVICE_NODE_FLAGS. */
export const SERVICE_COMMANDS: ReadonlySet<string> = new Set(['router', 'connector']);

/** Node's arguments before bin/relay.js for `relay <command>`. */
export function nodeFlagsFor(command: string | undefined): string[] {
  return command !== undefined && SERVICE_COMMANDS.has(command) ? [...SERVICE_NODE_FLAGS] : [];
}
