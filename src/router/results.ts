// Where result chunks meet the waiting client response (sync and stream modes).
// A sink lives on the router instance that holds the client's response; memory per request
// is bounded: stream keeps a window of chunks (BACKPRESSURE past it), sync keeps at most the
// sync limit (RESULT_TOO_LARGE past it).
import type { ServerResponse } from 'node:http';
import { Xxh64Stream } from '../protocol/checksum.js';
import { rawZstdFrame, type Encoding } from '../protocol/codec.js';
import { RelayError } from '../protocol/errors.js';
import { HEADERS, type Mode } from '../protocol/wire.js';
import { sendError } from './http.js';

export interface InitMeta {
  contentType: string;
  totalBytes: number | null;
}

export interface CompleteMeta {
  chunks: number;
  bytes: number;
  checksum: string;
}

/** A chunk as the sink needs it: decoded bytes, or (pass-through) the zstd frame. */
export interface SinkChunk {
  index: number;
  body: Buffer;
  encoding: Encoding;
  decodedLength: number;
  decoded?: Buffer;
}

export abstract class Sink {
  protected started = false;
  protected ended = false;
  protected contentType = 'application/octet-stream';
  private resolveDone!: () => void;
  /** Resolves when the response has been fully handed to the client. */
  readonly done = new Promise<void>((r) => (this.resolveDone = r));
  /** Set by the route: called once if the client goes away before the end. */
  onClientGone: () => void = () => undefined;

  constructor(
    readonly requestId: string,
    readonly mode: Mode,
    protected readonly res: ServerResponse,
  ) {
    res.on('close', () => {
      if (!this.ended) {
        this.ended = true;
        this.onClientGone();
        this.resolveDone();
      }
    });
  }

  abstract get passthrough(): boolean;
  /** Reserves room for a chunk before it is recorded; throws BACKPRESSURE / RESULT_TOO_LARGE. */
  abstract admit(index: number, decodedLength: number): 'ok' | 'delivered';
  abstract release(index: number): void;
  abstract put(chunk: SinkChunk): void;
  abstract complete(meta: CompleteMeta): Promise<void>;
  /** Waits (bounded) until admit(index) would not answer BACKPRESSURE. */
  waitForRoom(_index: number, _ms: number): Promise<void> {
    return Promise.resolve();
  }

  init(meta: InitMeta): void {
    this.contentType = meta.contentType;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Ends the client's answer with an error: a JSON error before the first byte, a cut body after. */
  fail(err: RelayError): void {
    if (this.ended) return;
    this.ended = true;
    err.requestId ??= this.requestId;
    if (!this.res.headersSent) sendError(this.res, err);
    else this.res.destroy(err);
    this.resolveDone();
  }

  protected finish(): void {
    this.ended = true;
    this.resolveDone();
  }
}

export class StreamSink extends Sink {
  private next = 0;
  private readonly window = new Map<number, Buffer>();
  private readonly reserved = new Set<number>();
  private readonly hasher: Xxh64Stream | null;
  private bytesOut = 0;
  private pumping = false;
  private roomWaiters: (() => void)[] = [];

  constructor(
    requestId: string,
    res: ServerResponse,
    private readonly windowChunks: number,
    private readonly zstdPassthrough: boolean,
    private readonly onBytes: (n: number) => void,
  ) {
    super(requestId, 'stream', res);
    this.hasher = zstdPassthrough ? null : new Xxh64Stream();
  }

  get passthrough(): boolean {
    return this.zstdPassthrough;
  }

  private hasRoom(index: number): boolean {
    return index < this.next + this.windowChunks && this.window.size + this.reserved.size < this.windowChunks;
  }

  admit(index: number): 'ok' | 'delivered' {
    if (index < this.next || this.window.has(index) || this.reserved.has(index)) return 'delivered';
    if (!this.hasRoom(index)) throw new RelayError('BACKPRESSURE', 'the client is reading slower than the connector sends', { requestId: this.requestId, retryAfterMs: 200 });
    this.reserved.add(index);
    return 'ok';
  }

  override waitForRoom(index: number, ms: number): Promise<void> {
    if (this.hasRoom(index) || this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.roomWaiters.push(done);
    });
  }

  release(index: number): void {
    this.reserved.delete(index);
    this.wakeRoomWaiters();
  }

  override init(meta: InitMeta): void {
    super.init(meta);
    if (this.started || this.ended) return;
    this.started = true;
    const headers: Record<string, string> = {
      'content-type': meta.contentType,
      [HEADERS.requestId]: this.requestId,
      trailer: 'X-Relay-Checksum',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    };
    if (this.zstdPassthrough) headers['content-encoding'] = 'zstd';
    this.res.writeHead(200, headers);
    this.res.flushHeaders();
  }

  put(chunk: SinkChunk): void {
    this.reserved.delete(chunk.index);
    if (this.ended || chunk.index < this.next) return;
    let out: Buffer;
    if (this.zstdPassthrough) out = chunk.encoding === 'zstd' ? chunk.body : rawZstdFrame(chunk.body);
    else out = chunk.decoded ?? chunk.body;
    this.window.set(chunk.index, out);
    this.bytesOut += chunk.decodedLength;
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.ended && this.window.has(this.next)) {
        const buf = this.window.get(this.next)!;
        this.window.delete(this.next);
        this.next++;
        this.hasher?.update(buf);
        this.onBytes(buf.length);
        this.wakeRoomWaiters();
        if (!this.res.write(buf)) await drainOrClose(this.res);
      }
    } finally {
      this.pumping = false;
      this.wakeRoomWaiters();
      this.settle?.();
    }
  }

  private settle?: () => void;

  private wakeRoomWaiters(): void {
    const w = this.roomWaiters;
    this.roomWaiters = [];
    w.forEach((f) => f());
  }

  async complete(meta: CompleteMeta): Promise<void> {
    if (this.ended) throw new RelayError('GONE', 'the client has gone away', { requestId: this.requestId });
    // Every chunk was accepted before `complete` was sent, so what is not written yet is only
    // waiting for the client to read: wait for the window to drain.
    while ((this.pumping || this.window.has(this.next)) && !this.ended) await new Promise<void>((r) => (this.settle = r));
    this.settle = undefined;
    if (this.ended) throw new RelayError('GONE', 'the client has gone away', { requestId: this.requestId });
    if (this.next !== meta.chunks || this.window.size > 0) {
      throw new RelayError('CONFLICT', `complete says ${meta.chunks} chunks, the router has chunks 0..${this.next - 1}${this.window.size ? ` and ${this.window.size} more out of order` : ''}`, { requestId: this.requestId });
    }
    if (this.bytesOut !== meta.bytes) throw new RelayError('CONFLICT', `complete says ${meta.bytes} bytes, ${this.bytesOut} arrived`, { requestId: this.requestId });
    if (this.hasher) {
      const got = this.hasher.digest();
      if (got !== meta.checksum) throw new RelayError('CHECKSUM_MISMATCH', `result checksum ${got} does not match ${meta.checksum}`, { requestId: this.requestId });
    }
    if (!this.started) this.init({ contentType: this.contentType, totalBytes: meta.bytes });
    this.res.addTrailers({ 'X-Relay-Checksum': meta.checksum });
    this.res.end();
    this.finish();
  }
}

export class SyncSink extends Sink {
  private readonly parts: (Buffer | undefined)[] = [];
  private held = 0;
  private readonly hasher = new Xxh64Stream();
  private hashed = 0;

  constructor(
    requestId: string,
    res: ServerResponse,
    private readonly limit: number,
    private readonly wantsJson: boolean,
    private readonly onBytes: (n: number) => void,
  ) {
    super(requestId, 'sync', res);
  }

  get passthrough(): boolean {
    return false;
  }

  tooLarge(bytes: number): RelayError {
    return new RelayError('RESULT_TOO_LARGE', `the result (${bytes} bytes or more) is over the sync limit of ${this.limit} bytes; use request-stream or request-offload`, { requestId: this.requestId });
  }

  override init(meta: InitMeta): void {
    super.init(meta);
    if (meta.totalBytes !== null && meta.totalBytes > this.limit) throw this.tooLarge(meta.totalBytes);
  }

  admit(index: number, decodedLength: number): 'ok' | 'delivered' {
    if (this.parts[index]) return 'delivered';
    if (this.held + decodedLength > this.limit) throw this.tooLarge(this.held + decodedLength);
    this.held += decodedLength;
    return 'ok';
  }

  release(): void {}

  put(chunk: SinkChunk): void {
    if (this.ended || this.parts[chunk.index]) return;
    this.parts[chunk.index] = chunk.decoded ?? chunk.body;
    while (this.parts[this.hashed]) this.hasher.update(this.parts[this.hashed++]!);
  }

  async complete(meta: CompleteMeta): Promise<void> {
    if (this.ended) throw new RelayError('GONE', 'the client has gone away', { requestId: this.requestId });
    if (this.hashed !== meta.chunks || this.parts.length !== meta.chunks) {
      throw new RelayError('CONFLICT', `complete says ${meta.chunks} chunks, the router has ${this.parts.filter(Boolean).length}`, { requestId: this.requestId });
    }
    const bytes = this.parts.reduce((n, p) => n + p!.length, 0);
    if (bytes !== meta.bytes) throw new RelayError('CONFLICT', `complete says ${meta.bytes} bytes, ${bytes} arrived`, { requestId: this.requestId });
    const got = this.hasher.digest();
    if (got !== meta.checksum) throw new RelayError('CHECKSUM_MISMATCH', `result checksum ${got} does not match ${meta.checksum}`, { requestId: this.requestId });
    const textual = /^(text\/|application\/(x-)?ndjson|application\/json)/.test(this.contentType);
    if (this.wantsJson && textual) {
      const body = JSON.stringify({ status: 'success', request_id: this.requestId, data: Buffer.concat(this.parts as Buffer[]).toString('utf8') });
      this.res.writeHead(200, { 'content-type': 'application/json', [HEADERS.requestId]: this.requestId, [HEADERS.checksum]: got });
      this.res.end(body);
    } else {
      this.res.writeHead(200, {
        'content-type': this.contentType,
        'content-length': String(bytes),
        [HEADERS.requestId]: this.requestId,
        [HEADERS.checksum]: got,
      });
      this.res.cork();
      for (const p of this.parts) this.res.write(p!);
      this.res.end();
    }
    this.onBytes(bytes);
    this.parts.length = 0;
    this.finish();
  }
}

function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** The sinks of this router instance, by request id. */
export class Sinks {
  private readonly byId = new Map<string, Sink>();
  get(id: string): Sink | undefined {
    return this.byId.get(id);
  }
  add(sink: Sink): void {
    this.byId.set(sink.requestId, sink);
    void sink.done.then(() => this.byId.delete(sink.requestId));
  }
  get size(): number {
    return this.byId.size;
  }
  all(): Sink[] {
    return [...this.byId.values()];
  }
}
