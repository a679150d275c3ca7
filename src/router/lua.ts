// The router's Lua scripts, run as plain EVALSHA commands (EVAL when Redis does not have the
// script: a restart, SCRIPT FLUSH, another Redis behind the same URL), not through ioredis's
// defineCommand. Each auto-pipelined batch is an ioredis Pipeline, which copies every script
// defined on its connection onto itself (our 12: 24 properties per batch), and each defined
// script's call goes through ioredis's own NOSCRIPT wrapper. CPU profiles of the router, 1 KB
// sync requests 20 at a time: ioredis's own code 14 % → 10 % of the router's busy time.
import { createHash } from 'node:crypto';
import type { Redis } from './redis.js';

export class LuaScript {
  readonly sha: string;

  constructor(
    readonly numberOfKeys: number,
    readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** Runs the script: its numberOfKeys keys first, then its arguments. */
  async run<T>(redis: Redis, ...keysAndArgs: (string | number)[]): Promise<T> {
    try {
      return (await redis.evalsha(this.sha, this.numberOfKeys, ...keysAndArgs)) as T;
    } catch (err) {
      // EVAL runs it and stores it for the EVALSHAs after.
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return (await redis.eval(this.source, this.numberOfKeys, ...keysAndArgs)) as T;
    }
  }
}
