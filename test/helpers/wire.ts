// A connector reduced to the bare wire protocol, for driving the router step by step in tests.
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Agent, fetch as undiciFetch } from 'undici';
import { xxh64 } from '../../src/protocol/checksum.js';
import { zstdCompress } from '../../src/protocol/codec.js';

/**
 * The headers of a raw chunk upload of attempt 1 with its Content-Length, for tests that send
 * the body themselves (in pieces, or half of it).
 */
export function rawChunkHeaders(token: string, data: Buffer): Record<string, string> {
  return {
    authorization: `Bearer ${token}`,
    'content-type': 'application/octet-stream',
    'content-length': String(data.length),
    'x-relay-attempt': '1',
    'x-relay-checksum': xxh64(data),
    'x-relay-decoded-length': String(data.length),
  };
}

export class WireConnector {
  readonly events: EventSourceMessage[] = [];
  retry: number | null = null;
  private ctrl = new AbortController();
  private readonly agent = new Agent();
  private response: unknown;
  private waiters: (() => void)[] = [];
  status = 0;
  /** The event stream ended (and why, when it broke). */
  ended = false;
  readError: unknown;

  constructor(
    readonly url: string,
    readonly token: string,
  ) {}

  async connect(lastEventId?: string): Promise<this> {
    // Its own connection pool: the test's client requests (undici's shared global dispatcher)
    // must never share state with the long-lived event stream.
    const res = await undiciFetch(`${this.url}/v1/connectors/events?concurrency=4&version=test`, {
      dispatcher: this.agent,
      headers: { authorization: `Bearer ${this.token}`, accept: 'text/event-stream', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
      signal: this.ctrl.signal,
    });
    this.status = res.status;
    // Held on purpose: undici cancels the body of a fetch Response once the Response itself is
    // garbage-collected, which silently ends the event stream mid-test.
    this.response = res;
    if (res.status !== 200) return this;
    const parser = createParser({
      onEvent: (e) => {
        this.events.push(e);
        this.waiters.splice(0).forEach((w) => w());
      },
      onRetry: (ms) => (this.retry = ms),
    });
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    void (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parser.feed(dec.decode(value, { stream: true }));
        }
      } catch (err) {
        this.readError = err;
      }
      this.ended = true;
    })();
    await this.next((e) => e.event === 'hello');
    return this;
  }

  async next(match: (e: EventSourceMessage) => boolean, ms = 10_000): Promise<EventSourceMessage> {
    const end = Date.now() + ms;
    for (;;) {
      // Matching events are consumed, so each call sees the next one.
      const i = this.events.findIndex(match);
      if (i >= 0) return this.events.splice(i, 1)[0]!;
      if (Date.now() > end) throw new Error(`no matching event; got ${this.events.map((e) => e.event).join(',')}${this.ended ? ` (stream ended: ${String(this.readError ?? 'closed')})` : ''}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  async command(requestId?: string, ms?: number): Promise<{ id: string; data: Record<string, unknown> & { request_id: string; attempt: number } }> {
    const e = await this.next((e) => e.event === 'command' && (!requestId || JSON.parse(e.data).request_id === requestId), ms);
    return { id: e.id!, data: JSON.parse(e.data) };
  }

  close(): void {
    this.ctrl.abort();
    void this.agent.close().catch(() => undefined);
  }

  post(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    return fetch(`${this.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
  }

  async chunk(requestId: string, index: number, data: Buffer, opts: { attempt?: number; zstd?: boolean; checksum?: string } = {}): Promise<Response> {
    const body = opts.zstd ? await zstdCompress(data) : data;
    return fetch(`${this.url}/v1/requests/${requestId}/stream/chunk/${index}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${this.token}`,
        'content-type': 'application/octet-stream',
        'x-relay-attempt': String(opts.attempt ?? 1),
        'x-relay-checksum': opts.checksum ?? xxh64(body),
        'x-relay-decoded-length': String(data.length),
        ...(opts.zstd ? { 'content-encoding': 'zstd' } : {}),
      },
      body: new Uint8Array(body),
    });
  }
}
