// One Redis subscription per router instance fans out every cross-instance notification:
// commands for connectors whose stream is open here, request state changes for clients
// waiting here, stream takeovers and revocations. No per-connector Redis connection.
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import { keys, type Redis } from './redis.js';
import type { BusEvent } from './requests.js';

export type ReqEvent = Extract<BusEvent, { t: 'req' }>;

export interface WaitOptions<T> {
  pollMs?: number;
  signal?: AbortSignal;
  onEvent?: (ev: ReqEvent) => T | null | undefined;
  checkFirst?: boolean;
}

export class Bus extends EventEmitter {
  constructor(
    private readonly sub: Redis,
    private readonly log: Logger,
  ) {
    super();
    this.setMaxListeners(0);
  }

  async start(): Promise<void> {
    this.sub.on('message', (_channel: string, message: string) => {
      let ev: BusEvent;
      try {
        ev = JSON.parse(message) as BusEvent;
      } catch {
        this.log.warn('ignored a malformed bus message');
        return;
      }
      if (ev.t === 'req') this.emit(`req:${ev.id}`, ev);
      else this.emit(ev.t, ev);
    });
    await this.sub.subscribe(keys.busChannel);
  }

  /**
   * Resolves when `check` returns a value, or null at the deadline. `check` runs first (unless
   * checkFirst is false: the caller just looked) and every pollMs. An event for the request goes
   * to `onEvent`: undefined ignores it (most events cannot change what a given waiter waits
   * for, and every check is a Redis read), null runs the check, a value resolves with it.
   */
  async waitFor<T>(requestId: string, check: () => Promise<T | null>, deadline: number, opts: WaitOptions<T> = {}): Promise<T | null> {
    const { pollMs = 1000, signal, onEvent = () => null, checkFirst = true } = opts;
    if (checkFirst) {
      const first = await check();
      if (first !== null) return first;
    }
    return new Promise<T | null>((resolve) => {
      let done = false;
      let checking = false;
      let again = false;
      const finish = (v: T | null) => {
        if (done) return;
        done = true;
        clearInterval(poll);
        clearTimeout(timer);
        this.off(`req:${requestId}`, event);
        signal?.removeEventListener('abort', abort);
        resolve(v);
      };
      const run = () => {
        if (done) return;
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        check()
          .then((v) => {
            checking = false;
            if (v !== null) finish(v);
            else if (again) {
              again = false;
              run();
            }
          })
          .catch(() => {
            checking = false;
          });
      };
      const event = (ev: ReqEvent) => {
        const v = onEvent(ev);
        if (v === null) run();
        else if (v !== undefined) finish(v);
      };
      const abort = () => finish(null);
      signal?.addEventListener('abort', abort);
      this.on(`req:${requestId}`, event);
      const poll = setInterval(run, pollMs);
      const timer = setTimeout(() => finish(null), Math.max(0, deadline - Date.now()));
    });
  }
}
