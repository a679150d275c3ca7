// A closed-loop load generator: W workers, each sending its next request as soon as the last
// one is answered, over one undici pool (one keep-alive connection per worker), for a duration
// or a count. Records each request's latency and failure reason. The same loop drives the
// baselines (a plain GET of the file from node:http, direct or through ssh -R), with the same
// checks on every answer, so the rows of a table differ only in what serves them.
import { Pool } from 'undici';
import { xxh64 } from '../../src/protocol/checksum.js';
import { HEADERS } from '../../src/protocol/wire.js';
import { percentile } from './stats.js';

/** A relay request (POST with a client key): its answer's X-Relay-Checksum is checked against the body. */
export interface RelayLoadRequest {
  path: string;
  key: string;
  body: object;
  /** Decoded bytes the answer must have. */
  expectBytes: number;
}

/** A baseline request (GET of a file): the body is checked against the file's known checksum. */
export interface PlainLoadRequest {
  path: string;
  expectBytes: number;
  expectChecksum: string;
}

export type LoadRequest = RelayLoadRequest | PlainLoadRequest;

export interface LoadResult {
  ok: number;
  errors: Map<string, number>;
  latenciesMs: number[];
  seconds: number;
}

export async function closedLoop(
  origin: string,
  opts: { workers: number; durationS?: number; count?: number; next(i: number): LoadRequest },
): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: opts.workers, pipelining: 1, keepAliveTimeout: 30_000 });
  const errors = new Map<string, number>();
  const latenciesMs: number[] = [];
  let ok = 0;
  let issued = 0;
  const t0 = performance.now();
  const end = opts.durationS ? t0 + opts.durationS * 1000 : Infinity;
  const fail = (why: string) => errors.set(why, (errors.get(why) ?? 0) + 1);
  const worker = async () => {
    while (performance.now() < end && (opts.count === undefined || issued < opts.count)) {
      const r = opts.next(issued++);
      const start = performance.now();
      try {
        const timeouts = { headersTimeout: 120_000, bodyTimeout: 120_000 };
        const res = await pool.request(
          'key' in r
            ? { method: 'POST', path: r.path, headers: { authorization: `Bearer ${r.key}`, 'content-type': 'application/json', accept: '*/*' }, body: JSON.stringify(r.body), ...timeouts }
            : { method: 'GET', path: r.path, ...timeouts },
        );
        const body = Buffer.from(await res.body.arrayBuffer());
        if (res.statusCode !== 200) {
          let code = `HTTP ${res.statusCode}`;
          try {
            code = (JSON.parse(body.toString()) as { error: { code: string } }).error.code;
          } catch {
            // not a protocol error body
          }
          fail(code);
        } else if (body.length !== r.expectBytes) fail(`${body.length} bytes, expected ${r.expectBytes}`);
        else if (('key' in r ? res.headers[HEADERS.checksum] : r.expectChecksum) !== xxh64(body)) fail('checksum mismatch');
        else {
          ok++;
          latenciesMs.push(performance.now() - start);
        }
      } catch (err) {
        fail((err as { code?: string }).code ?? (err instanceof Error ? err.message : String(err)));
      }
    }
  };
  await Promise.all(Array.from({ length: opts.workers }, worker));
  const seconds = (performance.now() - t0) / 1000;
  await pool.close();
  return { ok, errors, latenciesMs, seconds };
}

export function latencySummary(ms: number[]): { p50: number; p95: number; p99: number; max: number } {
  return { p50: percentile(ms, 50), p95: percentile(ms, 95), p99: percentile(ms, 99), max: percentile(ms, 100) };
}

export const errorText = (errors: Map<string, number>): string =>
  errors.size ? [...errors].map(([k, n]) => `${k} ×${n}`).join(', ') : '-';
