// Where result chunks meet the waiting client response (sync and stream modes).
// A sink lives on the router instance that holds the client's response; memory per request
// is bounded: stream keeps a window of chunks (BACKPRESSURE past it), sync keeps at most the
// sync limit (RESULT_TOO_LARGE past it).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { Xxh64Stream } from '../protocol/checksum.js';
import { rawZstdFramePieces, type Encoding } from '../protocol/codec.js';
import { RelayError } from '../protocol/errors.js';
import { HEADERS, type Mode } from '../protocol/wire.js';
import { onClosed, sendError } from './http.js';
import type { SpillFile, SyncSpill } from './spill.js';

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
  /** The body as sent. */
  body: Buffer;
  encoding: Encoding;
  decodedLength: number;
  decoded?: Buffer;
  /**
   * Hands back the pooled buffer behind what the sink keeps: `decoded` if given, else `body`.
   * A sink calls it once those bytes are no longer needed (a stream sink: when the client's
   * socket has taken them); one that never calls it just leaves the buffer to the GC.
   */
  release?: () => void;
}

export abstract class Sink {
  protected started = false;
  protected ended = false;
  protected contentType = 'application/octet-stream';
  private resolveDone!: () => void;
  /** Resolves when the response has been fully handed to the client. */
  readonly done = new Promise<void>((r) => (this.resolveDone = r));
  private clientGone = false;
  private onClientGone: () => void = () => undefined;
  /** The connector the request was sent to: only its uploads may reach this sink. */
  connector = '';

  constructor(
    readonly requestId: string,
    readonly mode: Mode,
    protected readonly res: ServerResponse,
  ) {
    const gone = () => {
      // writableFinished: the whole answer was handed over and 'close' merely came before the
      // sink's own end step; that client did not go away.
      if (!this.ended && !res.writableFinished) {
        this.ended = true;
        this.clientGone = true;
        this.onClientGone();
        this.resolveDone();
      }
    };
    // Also a client that went away while the route awaited, before it made this sink: its
    // result would otherwise be sent to nobody.
    onClosed(res, gone);
  }

  /** Calls fn once if the client goes away before the end; at once if it already has. */
  whenClientGone(fn: () => void): void {
    this.onClientGone = fn;
    if (this.clientGone) fn();
  }

  abstract get passthrough(): boolean;
  /** Reserves room for a chunk before it is recorded; throws BACKPRESSURE / RESULT_TOO_LARGE. */
  abstract admit(index: number, decodedLength: number): 'ok' | 'delivered';
  abstract release(index: number): void;
  abstract put(chunk: SinkChunk): void;
  abstract complete(meta: CompleteMeta): Promise<void>;
  /**
   * admit(), after waiting up to ms for room when the sink has a window (stream). `copy` is
   * the upload asking: a stream sink may close it if a repeat finds it stuck.
   */
  admitWithin(index: number, decodedLength: number, _ms: number, _copy?: IncomingMessage): Promise<'ok' | 'delivered'> {
    return Promise.resolve(this.admit(index, decodedLength));
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

/** How long a copy of a chunk being received may read nothing before a repeat replaces it. */
export const SUPERSEDE_IDLE_MS = 1000;

export class StreamSink extends Sink {
  private next = 0;
  /** Chunks waiting for their turn: the buffers to write (a raw chunk's zstd framing references its body). */
  private readonly window = new Map<number, { bufs: Buffer[]; release?: () => void }>();
  /** Chunks being received, each with its upload (null: the one-call /result). */
  private readonly reserved = new Map<number, IncomingMessage | null>();
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
    /** Told when a repeat closes a stuck copy of chunk `index` (for the log). */
    private readonly onSupersede: (index: number, idleMs: number) => void = () => undefined,
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

  /** The chunk was written or is waiting for its turn (and so was recorded). */
  private delivered(index: number): boolean {
    return index < this.next || this.window.has(index);
  }

  /**
   * A copy of the chunk still being received (reserved) is not a delivery: that copy may yet
   * fail, and a repeat answered as delivered would never be sent again. The repeat waits for
   * it (admitWithin) or is told to come back.
   */
  admit(index: number, _decodedLength?: number, copy: IncomingMessage | null = null): 'ok' | 'delivered' {
    if (this.delivered(index)) return 'delivered';
    if (this.reserved.has(index)) throw new RelayError('BACKPRESSURE', `chunk ${index} is being received on another connection`, { requestId: this.requestId, retryAfterMs: 200 });
    if (!this.hasRoom(index)) throw new RelayError('BACKPRESSURE', 'the client is reading slower than the connector sends', { requestId: this.requestId, retryAfterMs: 200 });
    this.reserved.set(index, copy);
    return 'ok';
  }

  /**
   * Every waiter wakes when a slot frees (or a copy being received is stored or dropped), but
   * only the first to run takes it: the others go back to waiting for what is left of their
   * time, instead of all but one being answered BACKPRESSURE (a 200 ms pause each, for a
   * client that was merely a little behind).
   *
   * A repeat of a chunk being received means its sender gave that copy up. If the copy's
   * connection then reads nothing for SUPERSEDE_IDLE_MS, it is closed and the repeat takes its
   * place (its release wakes us), instead of waiting out the body idle timeout (30 s) behind
   * a connection whose peer is gone. A copy still receiving bytes is left to finish.
   */
  override async admitWithin(index: number, decodedLength: number, ms: number, copy?: IncomingMessage): Promise<'ok' | 'delivered'> {
    const deadline = performance.now() + ms;
    // The copy this repeat waits behind, and since when its connection has read nothing.
    let stall = undefined as { req: IncomingMessage; bytesRead: number; since: number } | undefined;
    for (;;) {
      const now = performance.now();
      const left = deadline - now;
      if (this.ended || left <= 0 || this.delivered(index) || (!this.reserved.has(index) && this.hasRoom(index))) return this.admit(index, decodedLength, copy);
      const first = this.reserved.get(index);
      let wait = left;
      if (first && !first.complete) {
        const bytesRead = first.socket?.bytesRead ?? 0;
        if (stall?.req !== first || stall.bytesRead !== bytesRead) stall = { req: first, bytesRead, since: now };
        else if (now - stall.since >= SUPERSEDE_IDLE_MS) {
          this.onSupersede(index, now - stall.since);
          first.destroy();
          stall.since = now; // its release follows in a tick or two
        }
        wait = Math.min(left, Math.max(1, stall.since + SUPERSEDE_IDLE_MS - now));
      }
      await this.roomOrTimeout(wait);
    }
  }

  private roomOrTimeout(ms: number): Promise<void> {
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
    // The decoded size when the connector announced it (the web page's progress bar).
    if (meta.totalBytes != null) headers[HEADERS.totalBytes] = String(meta.totalBytes);
    this.res.writeHead(200, headers);
    this.res.flushHeaders();
  }

  put(chunk: SinkChunk): void {
    this.reserved.delete(chunk.index);
    if (this.ended || chunk.index < this.next) {
      chunk.release?.();
      return;
    }
    let bufs: Buffer[];
    if (this.zstdPassthrough) bufs = chunk.encoding === 'zstd' ? [chunk.body] : rawZstdFramePieces([chunk.body]);
    else bufs = [chunk.decoded ?? chunk.body];
    this.window.set(chunk.index, { bufs, release: chunk.release });
    this.bytesOut += chunk.decodedLength;
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.ended && this.window.has(this.next)) {
        const { bufs, release } = this.window.get(this.next)!;
        this.window.delete(this.next);
        this.next++;
        let n = 0;
        // One writev per chunk: corked, the framing and the body go out together.
        this.res.cork();
        let room = true;
        for (let i = 0; i < bufs.length; i++) {
          const b = bufs[i]!;
          this.hasher?.update(b);
          n += b.length;
          // The last write's callback runs once the socket has taken the bytes (or failed):
          // only then may a pooled body be reused.
          room = i === bufs.length - 1 && release ? this.res.write(b, () => release()) : this.res.write(b);
        }
        this.res.uncork();
        this.onBytes(n);
        this.wakeRoomWaiters();
        if (!room) await drainOrClose(this.res);
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

  /** A repeated complete (its first try got no answer) shares the first one's outcome. */
  complete(meta: CompleteMeta): Promise<void> {
    this.completion ??= this.completeOnce(meta);
    return this.completion;
  }

  private completion: Promise<void> | null = null;

  private async completeOnce(meta: CompleteMeta): Promise<void> {
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

/** One chunk of a sync result: in memory, or in the spill file (buf is kept while its write is in flight). */
interface SyncPart {
  length: number;
  buf: Buffer | null;
  /** Where it is in the spill file; null for a chunk held in memory (taken from the budget). */
  offset: number | null;
  /**
   * Gives the pooled buffer back (a raw chunk's body, or a chunk's decoded bytes). Called once
   * nothing uses `buf`: not the sink (`held`), not a spill write, not a write to the client
   * (`refs` counts all three).
   * Held chunk bodies that went back to V8 instead made a 100 MB sync answer cost the router
   * about six full garbage collections (external memory pressure).
   */
  release?: () => void;
  refs: number;
  held: boolean;
}

function unref(part: SyncPart): void {
  if (--part.refs > 0) return;
  const release = part.release;
  part.release = undefined;
  release?.();
}

/** The sink no longer keeps the part's buffer (spilled, delivered, or dropped). */
function dropHold(part: SyncPart): void {
  if (!part.held) return;
  part.held = false;
  unref(part);
}

/** Room taken for an admitted chunk that is not stored yet. */
interface Reservation {
  bytes: number;
  memory: boolean;
}

/**
 * Pattern A: the whole result is assembled, verified (xxh64) and only then answered with an exact
 * Content-Length. Chunks are held in memory while the router-wide budget (RELAY_SYNC_MEMORY_BYTES)
 * has room; past it they go to this request's spill file, appended in arrival order (so chunks
 * out of order and of any size work) with their offset noted. The answer is written from memory
 * and the file in index order, waiting for the client to drain. Budget and file are given back
 * when the sink ends, on every path (delivered, failed, cancelled, client gone).
 */
export class SyncSink extends Sink {
  private readonly parts: (SyncPart | undefined)[] = [];
  private readonly reservations = new Map<number, Reservation[]>();
  /** Bytes stored plus bytes admitted and not yet stored: what the sync limit is checked against. */
  private held = 0;
  /** Bytes this sink has taken from the shared budget. */
  private memHeld = 0;
  private stored = 0;
  private storedBytes = 0;
  private readonly hasher = new Xxh64Stream();
  private hashed = 0;
  private hashRunning = false;
  private hashTask: Promise<void> = Promise.resolve();
  private hashError: Error | null = null;
  private file: Promise<SpillFile> | null = null;
  private fileEnd = 0;
  private readonly writes = new Set<Promise<void>>();
  /** Buffers to read spilled chunks into, handed back after use. */
  private readonly spares: Buffer[] = [];
  /** The spill file could not be written: the rest of this result stays in memory. */
  private spillBroken = false;
  private completion: Promise<void> | null = null;
  private delivering = false;
  private cleanupTask: Promise<void> | null = null;

  constructor(
    requestId: string,
    res: ServerResponse,
    private readonly limit: number,
    private readonly wantsJson: boolean,
    private readonly onBytes: (n: number) => void,
    private readonly spill: SyncSpill,
  ) {
    super(requestId, 'sync', res);
    // Closed: delivered, failed or the client went away. Delivery cleans up after itself.
    res.on('close', () => {
      if (!this.delivering) void this.cleanup();
    });
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

  private reserve(bytes: number): Reservation {
    this.held += bytes;
    let memory: boolean;
    if (this.spillBroken) {
      this.spill.budget.take(bytes);
      memory = true;
    } else memory = this.spill.budget.tryTake(bytes);
    if (memory) this.memHeld += bytes;
    return { bytes, memory };
  }

  private unreserve(r: Reservation): void {
    this.held -= r.bytes;
    if (r.memory) this.giveBack(r.bytes);
  }

  private giveBack(bytes: number): void {
    const n = Math.min(bytes, this.memHeld);
    this.memHeld -= n;
    this.spill.budget.give(n);
  }

  admit(index: number, decodedLength: number): 'ok' | 'delivered' {
    if (this.ended) throw new RelayError('GONE', 'the client has gone away', { requestId: this.requestId });
    if (this.completion || this.parts[index]) return 'delivered';
    if (this.held + decodedLength > this.limit) throw this.tooLarge(this.held + decodedLength);
    const r = this.reserve(decodedLength);
    const list = this.reservations.get(index);
    if (list) list.push(r);
    else this.reservations.set(index, [r]);
    return 'ok';
  }

  private takeReservation(index: number): Reservation | undefined {
    const list = this.reservations.get(index);
    const r = list?.pop();
    if (list && list.length === 0) this.reservations.delete(index);
    return r;
  }

  release(index: number): void {
    const r = this.takeReservation(index);
    if (r) this.unreserve(r);
  }

  put(chunk: SinkChunk): void {
    const r = this.takeReservation(chunk.index);
    if (this.ended || this.completion || this.parts[chunk.index]) {
      if (r) this.unreserve(r);
      chunk.release?.();
      return;
    }
    const buf = chunk.decoded ?? chunk.body;
    const release = chunk.release;
    let room = r ?? this.reserve(buf.length);
    if (room.bytes !== buf.length) {
      // Admitted with another length than arrived (decoding checks this; be exact anyway).
      this.unreserve(room);
      room = this.reserve(buf.length);
    }
    const part: SyncPart = { length: buf.length, buf, offset: null, release, refs: 1, held: true };
    this.parts[chunk.index] = part;
    this.stored++;
    this.storedBytes += buf.length;
    if (!room.memory) this.spillPart(part);
    this.kickHash();
  }

  /** Appends a chunk to the spill file; if that fails, the chunk stays in memory. */
  private spillPart(part: SyncPart): void {
    const buf = part.buf!;
    part.offset = this.fileEnd;
    this.fileEnd += buf.length;
    this.file ??= this.spill.createFile(this.requestId);
    part.refs++;
    const w = this.file
      .then((f) => f.write(buf, part.offset!))
      .then(
        () => {
          part.buf = null;
          dropHold(part);
          this.spill.spilled(buf.length);
        },
        (err: unknown) => {
          if (this.cleanupTask) return;
          // Disk full, directory gone: keep this result in memory (over the budget, still under
          // the sync limit) rather than fail a request that memory can serve.
          part.offset = null;
          this.spill.budget.take(part.length);
          this.memHeld += part.length;
          if (!this.spillBroken) this.spill.log?.error({ err, request: this.requestId }, 'sync spill file failed: keeping this result in memory');
          this.spillBroken = true;
        },
      )
      .finally(() => {
        unref(part);
        this.writes.delete(w);
      });
    this.writes.add(w);
  }

  /**
   * A chunk's bytes: from memory, or read from the spill file into a spare buffer. `done` hands
   * that buffer back once its bytes are no longer needed, so reading a spilled result allocates
   * a buffer or two, not one per chunk.
   */
  private async readPart(part: SyncPart): Promise<{ buf: Buffer; done: () => void }> {
    if (part.buf) return { buf: part.buf, done: () => undefined };
    const spare = this.spares.pop();
    const buf = await (await this.file!).read(part.offset!, part.length, spare);
    const backing = spare && spare.length >= part.length ? spare : buf;
    return { buf, done: () => void (this.spares.length < 4 && this.spares.push(backing)) };
  }

  /** Hashes the stored chunks in index order, as far as they are contiguous. */
  private kickHash(): void {
    if (!this.hashRunning && this.parts[this.hashed]) this.hashTask = this.hashLoop();
  }

  private async hashLoop(): Promise<void> {
    this.hashRunning = true;
    try {
      for (let p = this.parts[this.hashed]; p && !this.cleanupTask; p = this.parts[this.hashed]) {
        // A chunk on disk (it came out of order) is read back; the rest is hashed from memory,
        // without an await between taking the buffer and hashing it (it may go back to the
        // pool as soon as its spill write ends).
        if (p.buf) this.hasher.update(p.buf);
        else {
          const { buf, done } = await this.readPart(p);
          this.hasher.update(buf);
          done();
        }
        this.hashed++;
      }
    } catch (err) {
      this.hashError ??= err as Error;
    } finally {
      this.hashRunning = false;
    }
  }

  complete(meta: CompleteMeta): Promise<void> {
    if (this.ended) return Promise.reject(new RelayError('GONE', 'the client has gone away', { requestId: this.requestId }));
    this.completion ??= this.verifyAndAnswer(meta);
    return this.completion;
  }

  /** Checks what arrived against `complete`, then starts the answer (written in the background). */
  private async verifyAndAnswer(meta: CompleteMeta): Promise<void> {
    while (this.hashRunning) await this.hashTask;
    if (this.ended) throw new RelayError('GONE', 'the client has gone away', { requestId: this.requestId });
    if (this.hashError) throw new RelayError('INTERNAL', `the sync spill file could not be read: ${this.hashError.message}`, { requestId: this.requestId });
    if (this.hashed !== meta.chunks || this.parts.length !== meta.chunks) {
      throw new RelayError('CONFLICT', `complete says ${meta.chunks} chunks, the router has ${this.stored}`, { requestId: this.requestId });
    }
    if (this.storedBytes !== meta.bytes) throw new RelayError('CONFLICT', `complete says ${meta.bytes} bytes, ${this.storedBytes} arrived`, { requestId: this.requestId });
    const got = this.hasher.digest();
    if (got !== meta.checksum) throw new RelayError('CHECKSUM_MISMATCH', `result checksum ${got} does not match ${meta.checksum}`, { requestId: this.requestId });
    const json = this.wantsJson && /^(text\/|application\/(x-)?ndjson|application\/json)/.test(this.contentType);
    if (json) {
      this.res.writeHead(200, { 'content-type': 'application/json', [HEADERS.requestId]: this.requestId, [HEADERS.checksum]: got });
    } else {
      this.res.writeHead(200, {
        'content-type': this.contentType,
        'content-length': String(this.storedBytes),
        [HEADERS.requestId]: this.requestId,
        [HEADERS.checksum]: got,
      });
    }
    // The result is verified: the connector is done. The client reads at its own pace.
    this.delivering = true;
    void this.deliver(json);
  }

  /** Writes the parts in index order, each once the client has drained the one before. */
  private async deliver(json: boolean): Promise<void> {
    try {
      const text = json ? new StringDecoder('utf8') : null;
      const escape = (s: string) => Buffer.from(JSON.stringify(s).slice(1, -1));
      if (text) await this.write(Buffer.from(`{"status":"success","request_id":${JSON.stringify(this.requestId)},"data":"`));
      for (let i = 0; i < this.parts.length && !this.ended; i++) {
        const p = this.parts[i]!;
        // A buffer in memory is counted as in use until the client has it (a spill write that
        // ends meanwhile must not give it back to the pool).
        const inMemory = p.buf !== null;
        if (inMemory) p.refs++;
        const { buf, done: read } = await this.readPart(p);
        const done = inMemory ? () => unref(p) : read;
        this.parts[i] = undefined;
        dropHold(p);
        if (text) {
          const out = escape(text.write(buf));
          done();
          await this.write(out);
        } else await this.write(buf, done);
        if (p.offset === null) this.giveBack(p.length);
        this.onBytes(p.length);
      }
      if (text) await this.write(Buffer.from(`${JSON.stringify(text.end()).slice(1, -1)}"}`));
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.res.once('close', resolve);
        this.res.end(resolve);
      });
      this.finish();
    } catch (err) {
      this.spill.log?.error({ err, request: this.requestId }, 'sync answer failed after its headers');
      super.fail(new RelayError('INTERNAL', `the sync answer failed: ${(err as Error).message}`, { requestId: this.requestId }));
    } finally {
      this.delivering = false;
      await this.cleanup();
    }
  }

  /** Writes to the client, then waits for it to drain; `flushed` runs once buf is no longer needed. */
  private async write(buf: Buffer, flushed?: () => void): Promise<void> {
    if (this.ended || this.res.destroyed) return;
    const more = flushed ? this.res.write(buf, (err) => !err && flushed()) : this.res.write(buf);
    if (!more) await drainOrClose(this.res);
  }

  override fail(err: RelayError): void {
    super.fail(err);
    if (!this.delivering) void this.cleanup();
  }

  /** Gives the memory back to the budget and removes the spill file (idempotent). */
  private cleanup(): Promise<void> {
    this.cleanupTask ??= (async () => {
      this.giveBack(this.memHeld);
      this.reservations.clear();
      for (const p of this.parts) if (p) dropHold(p);
      this.parts.length = 0;
      await this.hashTask;
      await Promise.allSettled([...this.writes]);
      const file = await this.file?.catch(() => null);
      await file?.remove();
    })();
    return this.cleanupTask;
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
    // A re-attached client's sink may have replaced this one: remove only our own entry.
    void sink.done.then(() => {
      if (this.byId.get(sink.requestId) === sink) this.byId.delete(sink.requestId);
    });
  }
  get size(): number {
    return this.byId.size;
  }
  all(): Sink[] {
    return [...this.byId.values()];
  }
}
