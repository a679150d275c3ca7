// The connector's one long-lived connection: the router's SSE event stream (PROTOCOL.md §3.1).
// Parsing is eventsource-parser's; this module decides when to reconnect and how long to wait.
import { setTimeout as sleep } from 'node:timers/promises';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { request, type Dispatcher } from 'undici';
import type { Logger } from '../log.js';
import type { HelloEvent } from '../protocol/wire.js';
import { SSE_EVENTS } from '../protocol/wire.js';

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 30_000;
/** After 401/403 a retry cannot help until an operator acts: try again slowly. */
export const AUTH_RETRY_MS = 30_000;
const DEFAULT_HEARTBEAT_S = 30;

export interface EventHandlers {
  onHello?(hello: HelloEvent): void;
  /** Raw `data` of a command event; validation is the caller's. */
  onCommand(data: string, id: string | undefined): void;
  onCancel(data: string): void;
}

export interface EventStreamOptions {
  routerUrl: string;
  authorization: string;
  concurrency: number;
  version: string;
  dispatcher: Dispatcher;
  log: Logger;
  handlers: EventHandlers;
  random?: () => number;
  authRetryMs?: number;
}

/** How one connection ended, as far as choosing the next delay is concerned. */
export type StreamEnd =
  | { kind: 'auth'; status: number }
  | { kind: 'failed' }
  | { kind: 'ended'; clean: boolean; ageMs: number; maxAgeMs: number };

export interface ReconnectState {
  /** Consecutive unhealthy connections. */
  failures: number;
  /** The router's `retry:` value, when it sent one. */
  retryMs?: number;
}

/** Full jitter: uniform in [0, min(30 s, 0.5 s · 2^(n-1))] for the n-th consecutive failure. */
export function fullJitter(failures: number, random: () => number = Math.random): number {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, failures - 1));
  return Math.floor(random() * cap);
}

/**
 * The delay before the next connection, and the new failure count.
 * - The router closing a stream that lived its max_age: reconnect at once.
 * - A stream that was up and healthy and then dropped: wait the router's `retry:` (it spreads
 *   connectors after a router restart), or the first backoff step.
 * - Anything else (refused, non-200, a stream that died young, a silent stream): exponential
 *   backoff with full jitter, never shorter than the router's `retry:`.
 * - 401/403: slowly, without growing the backoff.
 */
export function reconnectDelay(end: StreamEnd, state: ReconnectState, random: () => number = Math.random, authRetryMs = AUTH_RETRY_MS): { delayMs: number; failures: number } {
  if (end.kind === 'auth') return { delayMs: authRetryMs, failures: state.failures };
  if (end.kind === 'ended') {
    if (end.clean && end.ageMs >= end.maxAgeMs / 2) return { delayMs: 0, failures: 0 };
    const healthyAfter = Math.min(30_000, end.maxAgeMs / 2);
    if (end.ageMs >= healthyAfter) return { delayMs: state.retryMs ?? fullJitter(1, random), failures: 0 };
  }
  const failures = state.failures + 1;
  return { delayMs: Math.max(state.retryMs ?? 0, fullJitter(failures, random)), failures };
}

export class EventStream {
  private stopped = false;
  private connection?: AbortController;
  private readonly stopSleep = new AbortController();
  private loop?: Promise<void>;
  private lastEventId?: string;
  private readonly state: ReconnectState = { failures: 0 };
  private heartbeatS = DEFAULT_HEARTBEAT_S;
  private maxAgeS = 300;
  private connected = false;

  constructor(private readonly opts: EventStreamOptions) {}

  /** The router's heartbeat period (from `hello`), which is also the lease period. */
  get heartbeatMs(): number {
    return this.heartbeatS * 1000;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.connection?.abort(new Error('connector stopping'));
    this.stopSleep.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { log } = this.opts;
    while (!this.stopped) {
      const end = await this.connectOnce();
      if (this.stopped) break;
      const next = reconnectDelay(end, this.state, this.opts.random, this.opts.authRetryMs);
      this.state.failures = next.failures;
      log.debug({ end, delayMs: next.delayMs, lastEventId: this.lastEventId }, 'reconnecting to the event stream');
      if (next.delayMs > 0) {
        try {
          await sleep(next.delayMs, undefined, { signal: this.stopSleep.signal });
        } catch {
          break;
        }
      }
    }
  }

  private async connectOnce(): Promise<StreamEnd> {
    const { log, handlers } = this.opts;
    const ac = new AbortController();
    this.connection = ac;
    const started = Date.now();
    let helloAt = 0;
    let watchdog: NodeJS.Timeout | undefined;
    // Nothing at all (not even `: ping`) for 2 × heartbeat: the connection is dead even if TCP
    // has not noticed (a proxy that silently dropped it, a half-open socket).
    const arm = () => {
      clearTimeout(watchdog);
      const ms = 2 * this.heartbeatMs;
      watchdog = setTimeout(() => ac.abort(new Error(`no data on the event stream for ${ms} ms`)), ms);
    };
    arm();
    try {
      const query = new URLSearchParams({ concurrency: String(this.opts.concurrency), version: this.opts.version });
      const headers: Record<string, string> = { authorization: this.opts.authorization, accept: 'text/event-stream', 'cache-control': 'no-cache' };
      if (this.lastEventId !== undefined) headers['last-event-id'] = this.lastEventId;
      const res = await request(`${this.opts.routerUrl.replace(/\/+$/, '')}/v1/connectors/events?${query}`, {
        method: 'GET',
        headers,
        signal: ac.signal,
        dispatcher: this.opts.dispatcher,
        // The watchdog owns liveness; undici's body timeout would cut a quiet but healthy stream.
        bodyTimeout: 0,
        headersTimeout: 30_000,
      });
      if (res.statusCode !== 200) {
        const text = (await res.body.text().catch(() => '')).slice(0, 300);
        if (res.statusCode === 401 || res.statusCode === 403) {
          log.error({ status: res.statusCode, body: text }, `the router refused this connector's token (HTTP ${res.statusCode}); check --id/--token with the operator. Retrying in ${(this.opts.authRetryMs ?? AUTH_RETRY_MS) / 1000} s`);
          return { kind: 'auth', status: res.statusCode };
        }
        log.warn({ status: res.statusCode, body: text }, 'event stream refused');
        return { kind: 'failed' };
      }
      const type = String(res.headers['content-type'] ?? '');
      if (!type.startsWith('text/event-stream')) {
        await res.body.dump().catch(() => undefined);
        log.warn({ contentType: type }, 'event stream answered with the wrong content type');
        return { kind: 'failed' };
      }
      this.connected = true;
      const parser = createParser({
        onEvent: (ev) => {
          if (ev.event === SSE_EVENTS.hello) helloAt = Date.now();
          this.dispatch(ev, handlers);
        },
        onRetry: (ms) => (this.state.retryMs = ms),
        onError: (err) => log.debug({ err: err.message }, 'unparsable event stream line'),
      });
      const decoder = new TextDecoder();
      for await (const chunk of res.body) {
        parser.feed(decoder.decode(chunk as Buffer, { stream: true }));
        // After feeding, so a `hello` in this chunk already sets the period.
        arm();
      }
      const ageMs = Date.now() - started;
      if (!helloAt) return { kind: 'failed' };
      if (ageMs < (this.maxAgeS * 1000) / 2) log.warn({ ageMs }, 'event stream closed early by the router (is another connector running with the same id?)');
      else log.info({ ageMs }, 'event stream closed by the router');
      return { kind: 'ended', clean: true, ageMs, maxAgeMs: this.maxAgeS * 1000 };
    } catch (err) {
      if (this.stopped) return { kind: 'failed' };
      const reason = ac.signal.aborted ? ac.signal.reason : err;
      const message = reason instanceof Error ? reason.message : String(reason);
      if (!helloAt) {
        log.warn({ err: message, failures: this.state.failures + 1 }, 'cannot open the event stream');
        return { kind: 'failed' };
      }
      log.warn({ err: message }, 'event stream lost');
      return { kind: 'ended', clean: false, ageMs: Date.now() - started, maxAgeMs: this.maxAgeS * 1000 };
    } finally {
      clearTimeout(watchdog);
      this.connected = false;
      if (!ac.signal.aborted) ac.abort();
    }
  }

  private dispatch(ev: EventSourceMessage, handlers: EventHandlers): void {
    const { log } = this.opts;
    try {
      switch (ev.event) {
        case SSE_EVENTS.hello: {
          const hello = JSON.parse(ev.data) as HelloEvent;
          if (typeof hello.heartbeat_s === 'number' && hello.heartbeat_s > 0) this.heartbeatS = hello.heartbeat_s;
          if (typeof hello.max_age_s === 'number' && hello.max_age_s > 0) this.maxAgeS = hello.max_age_s;
          log.info({ session: hello.session_id, connectorId: hello.connector_id, heartbeatS: this.heartbeatS, maxAgeS: this.maxAgeS }, 'event stream open');
          handlers.onHello?.(hello);
          break;
        }
        case SSE_EVENTS.command:
          // Last-Event-ID names the last command seen (PROTOCOL §3.1).
          if (ev.id !== undefined) this.lastEventId = ev.id;
          handlers.onCommand(ev.data, ev.id);
          break;
        case SSE_EVENTS.cancel:
          handlers.onCancel(ev.data);
          break;
        default:
          log.debug({ event: ev.event }, 'ignoring unknown event');
      }
    } catch (err) {
      log.warn({ event: ev.event, err: (err as Error).message }, 'bad event');
    }
  }
}
