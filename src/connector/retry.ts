// The upload retry policy of PROTOCOL.md §3.3, as pure functions so it can be tested without
// sleeping: the caller does the waiting.

export interface RetryPolicy {
  /** First backoff delay; it doubles on every failure. */
  baseMs: number;
  /** Ceiling of one backoff delay. */
  maxMs: number;
  /** Tries per upload, the first one included. */
  maxTries: number;
  /** Ceiling on a router's Retry-After, so one odd header cannot park an upload for hours. */
  maxRetryAfterMs: number;
  /**
   * BACKPRESSURE / RATE_LIMITED answers with a Retry-After are flow control, not failures: a
   * slow stream client keeps the router's window full for as long as it reads slowly. They do
   * not use up maxTries (that would fail a healthy but slow transfer after ~10 s); this bounds
   * them instead, next to the command's deadline.
   */
  maxFlowControlWaits: number;
}

export const UPLOAD_RETRY: RetryPolicy = {
  baseMs: 200,
  maxMs: 10_000,
  maxTries: 10,
  maxRetryAfterMs: 60_000,
  maxFlowControlWaits: 100_000,
};

/** What one try produced: no HTTP answer at all, or a status (with the router's Retry-After). */
export type TryOutcome = { kind: 'network'; error?: unknown } | { kind: 'status'; status: number; retryAfterMs?: number };

export interface RetryOptions {
  /**
   * 422 on a binary upload means the body was damaged in transit, so sending it again helps;
   * on `complete` it means the whole result does not match, which no resend can fix.
   */
  resend422?: boolean;
}

export function isRetryableStatus(status: number, opts: RetryOptions = {}): boolean {
  if (status >= 500) return true;
  if (status === 408 || status === 429) return true;
  return status === 422 && (opts.resend422 ?? true);
}

/** Delay after the n-th failed try (n from 1): 0.2 s, 0.4 s, 0.8 s, ... capped. */
export function backoffMs(failures: number, policy: RetryPolicy = UPLOAD_RETRY): number {
  return Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, failures - 1));
}

type HeaderBag = Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * When the router (or object store) asks to wait: `Retry-After-Ms` (may be fractional) wins over
 * `Retry-After`, which is seconds (fractional tolerated) or an HTTP date.
 */
export function parseRetryAfter(headers: HeaderBag, now = Date.now()): number | undefined {
  const ms = header(headers, 'retry-after-ms')?.trim();
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return Number(ms);
  const ra = header(headers, 'retry-after')?.trim();
  if (!ra) return undefined;
  if (/^\d+(\.\d+)?$/.test(ra)) return Number(ra) * 1000;
  const at = Date.parse(ra);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The retry bookkeeping of one upload; next() says how long to wait, or null to give up. */
export class RetryState {
  failures = 0;
  flowControlWaits = 0;

  constructor(
    readonly policy: RetryPolicy = UPLOAD_RETRY,
    readonly opts: RetryOptions = {},
  ) {}

  next(outcome: TryOutcome): number | null {
    const p = this.policy;
    let retryAfter: number | undefined;
    if (outcome.kind === 'status') {
      if (!isRetryableStatus(outcome.status, this.opts)) return null;
      if (outcome.retryAfterMs !== undefined) retryAfter = Math.min(Math.max(0, outcome.retryAfterMs), p.maxRetryAfterMs);
      if (retryAfter !== undefined && (outcome.status === 429 || outcome.status === 503)) {
        this.flowControlWaits += 1;
        return this.flowControlWaits > p.maxFlowControlWaits ? null : retryAfter;
      }
    }
    this.failures += 1;
    if (this.failures >= p.maxTries) return null;
    const delay = backoffMs(this.failures, p);
    return retryAfter === undefined ? delay : Math.max(delay, retryAfter);
  }
}
