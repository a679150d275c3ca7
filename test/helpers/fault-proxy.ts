// A fault-injecting TCP proxy for fault tests, soak runs and WAN benchmarks.
//
// Sits between a client and one upstream (router, object store, Redis...) on loopback and can
// refuse, black-hole, delay, throttle, reset, truncate, corrupt or answer 502, all switchable at
// run time with set(). Connection-level faults work for any TCP protocol; per-request faults
// (truncate/corrupt/502) need a minimal HTTP/1.1 framer on the client→upstream direction and
// fall back to plain pass-through on anything that does not parse as HTTP.
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export interface Faults {
  /** New connections are accepted and reset at once (upstream "unreachable"). */
  refuse?: boolean;
  /** Nothing is forwarded in either direction (a silent network). Reading stops, so bytes sit in
   *  kernel buffers and flow again, in order, when the black hole is lifted (like a healed link). */
  blackhole?: boolean;
  /** One-way delay added in each direction (RTT += 2 × latencyMs). */
  latencyMs?: number;
  /** Token bucket per direction, shared by all connections (one WAN link). */
  bandwidthBytesPerSec?: number;
  /** Client → upstream only (overrides bandwidthBytesPerSec for that direction). */
  bandwidthUpBytesPerSec?: number;
  /** Upstream → client only (overrides bandwidthBytesPerSec for that direction). */
  bandwidthDownBytesPerSec?: number;
  /** Per forwarded data segment: probability of resetting both sockets. */
  resetRate?: number;
  /** Per HTTP request: probability of forwarding only part of the body, then closing both sides. */
  truncateRate?: number;
  /** Per HTTP request: probability of flipping one byte of the body (never the head). */
  corruptRate?: number;
  /** Per HTTP request: probability of answering 502 instead of forwarding it, then closing. */
  http502Rate?: number;
  /** When set, per-request faults only apply to requests whose request-line path matches. */
  matchPath?: RegExp;
}

export interface FaultStats {
  connections: number; // accepted, including refused ones
  open: number; // currently open (proxied) connections
  bytesUp: number; // client → upstream, forwarded
  bytesDown: number; // upstream → client, forwarded
  refused: number;
  resets: number; // injected resets (resetRate and cutAll)
  truncated: number;
  corrupted: number;
  answered502: number;
  requests: number; // HTTP request heads seen on the client → upstream direction
}

export interface Target {
  host: string;
  port: number;
}

const HIGH_WATER = 1 << 20; // pause the reading socket once this much is queued in a pipe...
const LOW_WATER = 256 << 10; // ...and resume below this (hysteresis avoids pause/resume thrash)
// With latency on, bytes still "on the wire" do not count against the marks above: a pipe may
// hold the bandwidth-delay product on top (or this much when only latency is set, about what
// Linux lets TCP keep in flight), else reading pauses and a shaped link starves behind it.
const LATENCY_WINDOW = 4 << 20;
const MAX_HEAD = 64 << 10; // larger "heads" are not HTTP as far as we care: pass through
const CLOSE_GRACE_MS = 2000; // after an injected close, how long a lingering peer may take
/** A shaper whose pipes are waiting gets credit for this much lateness of its timer at most. */
const MAX_CATCHUP_S = 0.25;

const noop = () => {};

/** mulberry32: tiny, fast, good enough, and reproducible from a 32-bit seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Close our side gracefully (FIN after queued bytes), then release the handle. */
function endThenDestroy(s: net.Socket): void {
  if (s.destroyed) return;
  s.end();
  if (s.writableFinished) s.destroy();
  else s.once('finish', () => s.destroy());
}

/** Abortive close (RST) where the platform has it; a socket still connecting is just destroyed. */
function hardClose(s: net.Socket, reset: boolean): void {
  if (s.destroyed) return;
  if (reset && !s.connecting && typeof s.resetAndDestroy === 'function') {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      // not a TCP handle: fall through
    }
  }
  s.destroy();
}

/**
 * Shared token bucket for one direction. Debt-based: a grant may take the bucket below zero and
 * the next grant waits until it is paid back, so the long-run rate is exact without needing
 * a timer per byte. Waiting pipes are served round-robin, one quantum per turn, so connections
 * share the link fairly.
 */
class Shaper {
  private rate = 0;
  private quantum = 65536;
  private burst = 131072;
  private tokens = 0;
  private last = 0;
  private waiters: Pipe[] = [];
  private serving: Pipe | null = null;
  private timer: NodeJS.Timeout | null = null;

  get active(): boolean {
    return this.rate > 0;
  }

  get bytesPerSec(): number {
    return this.rate;
  }

  setRate(rate: number): Pipe[] {
    rate = rate > 0 ? rate : 0;
    if (rate === this.rate) return [];
    const wasActive = this.active;
    this.rate = rate;
    if (!rate) return this.release();
    // ~10 ms of traffic per grant, within [1 KiB, 64 KiB]: small enough to interleave
    // connections, large enough to keep timer wake-ups cheap.
    this.quantum = Math.min(65536, Math.max(1024, Math.floor(rate / 100)));
    this.burst = this.quantum * 2;
    if (!wasActive) {
      this.tokens = this.burst;
      this.last = performance.now();
    } else this.tokens = Math.min(this.tokens, this.burst);
    return [];
  }

  /** Bytes `p` may write now (≤ want), or 0: then `p` is queued and pumped when it is its turn. */
  take(p: Pipe, want: number): number {
    this.refill();
    if (this.tokens <= 0 || (this.waiters.length > 0 && this.serving !== p)) {
      if (!p.inShaper) {
        p.inShaper = true;
        this.waiters.push(p);
      }
      this.schedule();
      return 0;
    }
    if (this.serving === p) this.serving = null; // one quantum per turn
    const n = Math.min(want, this.quantum);
    this.tokens -= n;
    return n;
  }

  remove(p: Pipe): void {
    if (!p.inShaper) return;
    p.inShaper = false;
    const i = this.waiters.indexOf(p);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  /** Stop shaping; returns the pipes that were waiting so the caller can pump them. */
  release(): Pipe[] {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const w = this.waiters;
    this.waiters = [];
    for (const p of w) p.inShaper = false;
    return w;
  }

  private refill(): void {
    const now = performance.now();
    // While pipes wait, the link was busy all along: credit the whole interval (bounded), so a
    // timer that fires late (busy event loop) does not lower the long-run rate. Idle time only
    // refills the burst.
    const cap = this.waiters.length > 0 ? Math.max(this.burst, this.rate * MAX_CATCHUP_S) : this.burst;
    this.tokens = Math.min(cap, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }

  private schedule(): void {
    if (this.timer) return;
    const wait = this.tokens > 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.rate);
    this.timer = setTimeout(() => this.run(), Math.max(1, wait));
  }

  private run(): void {
    this.timer = null;
    this.refill();
    while (this.tokens > 0 && this.waiters.length > 0) {
      const p = this.waiters.shift()!;
      p.inShaper = false;
      this.serving = p;
      p.pump(); // takes one quantum, then requeues itself at the back if it has more
      this.serving = null;
    }
    if (this.waiters.length > 0) this.schedule();
  }
}

interface Segment {
  buf: Buffer;
  off: number;
  due: number; // performance.now() time at which it may be written (latency)
}

/**
 * One direction of one connection. Fast path: with nothing queued and no per-chunk fault on,
 * a chunk is written straight through (like stream.pipe, same backpressure) — that is what keeps
 * zero-fault throughput at loopback speed. Otherwise chunks go through a FIFO that applies
 * latency (one timer for the head, order preserved), the shared shaper and the black hole, and
 * the reading socket is paused while the FIFO is over HIGH_WATER.
 */
class Pipe {
  inShaper = false;
  /** Discard whatever the source sends from now on (after an injected 502/truncation). */
  sink = false;
  /** Run once instead of the normal end-of-stream handling when the FIFO next drains. */
  after: (() => void) | null = null;
  private q: (Segment | undefined)[] = [];
  private qHead = 0;
  private queued = 0;
  private waitingDrain = false;
  private paused = false;
  private srcEnded = false;
  private destEnded = false;
  private done = false; // `after` ran, or the pipe was disposed: nothing more is written
  private timer: NodeJS.Timeout | null = null;
  private timerDue = 0;
  private readonly onDrain = () => {
    this.waitingDrain = false;
    this.pump();
  };

  constructor(
    private readonly proxy: FaultProxy,
    private readonly conn: Conn,
    private readonly src: net.Socket,
    private readonly dest: net.Socket,
    private readonly up: boolean,
    private readonly framer: RequestFramer | null,
  ) {}

  private get shaper(): Shaper {
    return this.up ? this.proxy.shaperUp : this.proxy.shaperDown;
  }

  onData(chunk: Buffer): void {
    if (this.done || this.sink) return;
    const f = this.proxy.faults;
    if (f.resetRate && this.proxy.rand() < f.resetRate) {
      this.conn.reset();
      return;
    }
    if (this.framer) this.framer.feed(chunk);
    else this.forward(chunk);
  }

  onEnd(): void {
    this.srcEnded = true;
    this.pump();
  }

  /** Send bytes towards dest, in order, subject to the current faults. */
  forward(buf: Buffer): void {
    if (this.done || buf.length === 0) return;
    const f = this.proxy.faults;
    if (this.qHead === this.q.length && !this.waitingDrain && !f.blackhole && !f.latencyMs && !this.shaper.active) {
      this.write(buf);
      if (this.waitingDrain) this.updateFlow();
      return;
    }
    this.q.push({ buf, off: 0, due: f.latencyMs ? performance.now() + f.latencyMs : 0 });
    this.queued += buf.length;
    this.pump();
  }

  pump(): void {
    if (this.done) return;
    const f = this.proxy.faults;
    const shaper = this.shaper;
    let now = 0;
    while (this.qHead < this.q.length) {
      if (f.blackhole || this.waitingDrain) break;
      const s = this.q[this.qHead]!;
      if (s.due) {
        now ||= performance.now();
        if (s.due > now) {
          this.armTimer(s.due, now);
          break;
        }
      }
      let n = s.buf.length - s.off;
      if (shaper.active) {
        n = shaper.take(this, n);
        if (n === 0) break;
      }
      const part = s.off === 0 && n === s.buf.length ? s.buf : s.buf.subarray(s.off, s.off + n);
      s.off += n;
      this.queued -= n;
      if (s.off === s.buf.length) {
        this.q[this.qHead++] = undefined;
        if (this.qHead === this.q.length) {
          this.q = [];
          this.qHead = 0;
        } else if (this.qHead > 1024) {
          this.q = this.q.slice(this.qHead);
          this.qHead = 0;
        }
      }
      this.write(part);
      if (this.done) return;
    }
    if (this.qHead === this.q.length && !f.blackhole && !this.done) {
      if (this.after) {
        const a = this.after;
        this.after = null;
        this.done = true;
        a();
        return;
      }
      if (this.srcEnded && !this.destEnded) {
        // Propagate the half-close (FIN) in order, after the data before it.
        this.destEnded = true;
        if (!this.dest.destroyed) this.dest.end();
      }
    }
    this.updateFlow();
  }

  /** Re-evaluate after set(): lift a black hole, drop shaping, etc. */
  kick(): void {
    this.pump();
    this.updateFlow();
  }

  dispose(): void {
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.shaper.remove(this);
    this.q = [];
    this.qHead = 0;
    this.queued = 0;
    this.dest.removeListener('drain', this.onDrain);
  }

  private write(buf: Buffer): void {
    const d = this.dest;
    if (d.destroyed || d.writableEnded) return;
    if (this.up) this.proxy.stats.bytesUp += buf.length;
    else this.proxy.stats.bytesDown += buf.length;
    if (!d.write(buf)) {
      this.waitingDrain = true;
      d.once('drain', this.onDrain);
    }
  }

  private armTimer(due: number, now: number): void {
    if (this.timer && this.timerDue <= due) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDue = due;
    // libuv's clock may lag performance.now(); an early wake-up simply re-arms in pump().
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, Math.max(1, Math.ceil(due - now)));
  }

  /** Bytes this pipe may hold on top of the water marks while latency is on (see LATENCY_WINDOW). */
  private get onTheWire(): number {
    const ms = this.proxy.faults.latencyMs ?? 0;
    if (!ms) return 0;
    const rate = this.shaper.bytesPerSec;
    return rate > 0 ? Math.ceil((rate * ms) / 1000) : LATENCY_WINDOW;
  }

  private updateFlow(): void {
    const pause =
      !this.done &&
      !this.sink &&
      (!!this.proxy.faults.blackhole || this.waitingDrain || this.queued > (this.paused ? LOW_WATER : HIGH_WATER) + this.onTheWire);
    if (pause === this.paused) return;
    this.paused = pause;
    if (pause) this.src.pause();
    else this.src.resume();
  }
}

type Plan = { kind: 'truncate'; at: number } | { kind: 'corrupt'; at: number; xor: number } | null;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/1\.[01]$/;

/**
 * Minimal HTTP/1.1 request framer for the client → upstream direction. Always tracks the
 * request boundaries from the first byte of the connection (so faults switched on later with
 * set() hit the right bytes on a keep-alive connection), but only holds a head back until it is
 * complete while per-request faults are on; otherwise bytes go straight through. Anything it
 * cannot frame (non-HTTP, chunked bodies, upgrades) switches the connection to pass-through.
 */
class RequestFramer {
  pipe!: Pipe;
  private state: 'head' | 'body' | 'pass' | 'sink' = 'head';
  private held: Buffer | null = null; // head bytes seen so far (copy kept for parsing)
  private heldSent = 0; // how many of them were already forwarded (faults were off)
  private remaining = 0;
  private bodyPos = 0;
  private plan: Plan = null;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly conn: Conn,
  ) {}

  feed(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      switch (this.state) {
        case 'pass':
          this.pipe.forward(off === 0 ? chunk : chunk.subarray(off));
          return;
        case 'sink':
          return;
        case 'body': {
          const n = Math.min(this.remaining, chunk.length - off);
          let seg = off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n);
          const plan = this.plan;
          if (plan && plan.at < this.bodyPos + n) {
            const i = plan.at - this.bodyPos;
            if (plan.kind === 'truncate') {
              this.pipe.forward(seg.subarray(0, i));
              this.state = 'sink';
              this.conn.truncate();
              return;
            }
            seg = Buffer.from(seg); // never mutate a buffer we did not allocate
            seg[i] ^= plan.xor;
            this.proxy.stats.corrupted++;
            this.plan = null;
          }
          this.pipe.forward(seg);
          this.bodyPos += n;
          this.remaining -= n;
          off += n;
          if (this.remaining === 0) {
            this.state = 'head';
            this.plan = null;
          }
          break;
        }
        case 'head': {
          const rest = off === 0 ? chunk : chunk.subarray(off);
          const buf = this.held ? Buffer.concat([this.held, rest]) : rest;
          const from = this.held ? Math.max(0, this.held.length - 3) : 0;
          const idx = buf.indexOf('\r\n\r\n', from, 'latin1');
          if (idx < 0) {
            if (!this.plausible(buf)) return this.fallback(buf);
            if (!this.proxy.requestFaultsOn() || this.heldSent > 0) {
              // Faults are off: do not delay anybody's bytes, just remember them for parsing.
              this.pipe.forward(buf.subarray(this.heldSent));
              this.heldSent = buf.length;
            }
            this.held = buf;
            return;
          }
          const end = idx + 4;
          const sent = this.heldSent;
          this.held = null;
          this.heldSent = 0;
          const verdict = this.onHead(buf.subarray(0, end), sent);
          if (verdict === 'answered') return; // 502: the rest of the connection is dropped
          if (verdict === 'not-http') return this.fallback(buf, sent);
          chunk = buf;
          off = end;
          break;
        }
      }
    }
  }

  /** Could `buf` still be the start of an HTTP request head? */
  private plausible(buf: Buffer): boolean {
    if (buf.length > MAX_HEAD) return false;
    const c = buf[0]!;
    if (c < 0x41 || c > 0x5a) return false; // methods start with an upper-case letter
    const eol = buf.indexOf('\r\n', 0, 'latin1');
    if (eol < 0) {
      const sp = buf.indexOf(0x20);
      return buf.length <= 8192 && (sp < 0 ? TOKEN.test(buf.toString('latin1')) : sp > 0);
    }
    return REQUEST_LINE.test(buf.toString('latin1', 0, eol));
  }

  private fallback(buf: Buffer, sent = this.heldSent): void {
    this.state = 'pass';
    this.held = null;
    this.heldSent = 0;
    this.pipe.forward(buf.subarray(sent));
  }

  /** Parse a complete head and decide the request's fate. */
  private onHead(head: Buffer, sent: number): 'ok' | 'not-http' | 'answered' {
    const lines = head.toString('latin1', 0, head.length - 4).split('\r\n');
    const m = REQUEST_LINE.exec(lines[0]!);
    if (!m) return 'not-http';
    let length = 0;
    let lengthSeen: string | null = null;
    let passAfter = m[1] === 'CONNECT';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) return 'not-http';
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (!/^\d{1,15}$/.test(value) || (lengthSeen !== null && lengthSeen !== value)) return 'not-http';
        lengthSeen = value;
        length = Number(value);
      } else if (name === 'transfer-encoding' || name === 'upgrade') passAfter = true;
    }
    const stats = this.proxy.stats;
    stats.requests++;
    if (passAfter) {
      // Chunked bodies and protocol upgrades: forward as-is, no more per-request faults here.
      this.pipe.forward(head.subarray(sent));
      this.state = 'pass';
      return 'ok';
    }
    const f = this.proxy.faults;
    let plan: Plan = null;
    // A head already partly forwarded (faults were switched on mid-head) cannot be faulted.
    if (sent === 0 && this.proxy.requestFaultsOn() && this.proxy.pathMatches(m[2]!)) {
      const rand = () => this.proxy.rand();
      if (f.http502Rate && rand() < f.http502Rate) {
        this.state = 'sink';
        this.conn.answer502();
        return 'answered';
      }
      if (length > 0 && f.truncateRate && rand() < f.truncateRate) {
        plan = { kind: 'truncate', at: Math.floor(rand() * length) };
      } else if (length > 0 && f.corruptRate && rand() < f.corruptRate) {
        plan = { kind: 'corrupt', at: Math.floor(rand() * length), xor: 1 + Math.floor(rand() * 255) };
      }
    }
    this.pipe.forward(head.subarray(sent));
    this.plan = plan;
    this.bodyPos = 0;
    this.remaining = length;
    this.state = length > 0 ? 'body' : 'head';
    return 'ok';
  }
}

const BODY_502 = 'fault-proxy: injected 502 Bad Gateway\n';
const RESPONSE_502 = Buffer.from(
  'HTTP/1.1 502 Bad Gateway\r\n' +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(BODY_502)}\r\n` +
    'Connection: close\r\n' +
    '\r\n' +
    BODY_502,
  'latin1',
);

/** One proxied connection: client socket, upstream socket, a pipe each way. */
class Conn {
  readonly upstream: net.Socket;
  readonly up: Pipe;
  readonly down: Pipe;
  readonly closed: Promise<void>;
  private killed = false;
  private open = 2;
  private graceTimer: NodeJS.Timeout | null = null;
  private resolveClosed!: () => void;

  constructor(
    private readonly proxy: FaultProxy,
    readonly client: net.Socket,
    target: Target,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
    client.setNoDelay(true);
    // allowHalfOpen: we propagate each FIN ourselves, after the data queued before it.
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    proxy.track(upstream);
    this.upstream = upstream;
    const framer = new RequestFramer(proxy, this);
    this.up = new Pipe(proxy, this, client, upstream, true, framer);
    framer.pipe = this.up;
    this.down = new Pipe(proxy, this, upstream, client, false, null);
    client.on('data', (c: Buffer) => this.up.onData(c));
    client.on('end', () => this.up.onEnd());
    upstream.on('data', (c: Buffer) => this.down.onData(c));
    upstream.on('end', () => this.down.onEnd());
    for (const s of [client, upstream]) {
      // An error on one side (refused upstream, peer reset) is passed on as a reset of the other.
      s.on('error', () => this.kill(true));
      s.on('close', () => this.onClose());
    }
  }

  /** Injected reset (resetRate, cutAll). */
  reset(): void {
    if (this.killed) return;
    this.proxy.stats.resets++;
    this.kill(true);
  }

  kill(reset: boolean): void {
    if (this.killed) return;
    this.killed = true;
    this.up.dispose();
    this.down.dispose();
    hardClose(this.client, reset);
    hardClose(this.upstream, reset);
  }

  /** The framer cut a request body short: once the partial body is out, close both sides. */
  truncate(): void {
    this.proxy.stats.truncated++;
    this.up.sink = true;
    this.up.after = () => {
      endThenDestroy(this.upstream); // FIN mid-body: the server sees an aborted request
      this.client.destroy();
      this.armGrace();
    };
    this.up.pump();
  }

  /** Do not forward the request: answer 502 with Connection: close, then close. */
  answer502(): void {
    this.proxy.stats.answered502++;
    this.up.sink = true;
    this.up.dispose();
    // Keep reading (and dropping) the rest of the body: closing on unread data would send a
    // RST that can overtake the 502 before the client reads it.
    this.client.resume();
    this.upstream.destroy();
    this.down.sink = true;
    this.down.after = () => {
      if (!this.client.destroyed) this.client.end();
      this.armGrace();
    };
    this.down.forward(RESPONSE_502);
    this.down.pump();
  }

  private armGrace(): void {
    if (this.graceTimer || this.killed) return;
    this.graceTimer = setTimeout(() => this.kill(false), CLOSE_GRACE_MS);
  }

  private onClose(): void {
    // A clean close of one side means both its directions are done, so the other side only
    // has queued bytes left to flush: it closes by itself once they are out.
    if (--this.open > 0) return;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
    this.up.dispose();
    this.down.dispose();
    this.proxy.forget(this);
    this.resolveClosed();
  }
}

export class FaultProxy {
  readonly stats: FaultStats = {
    connections: 0,
    open: 0,
    bytesUp: 0,
    bytesDown: 0,
    refused: 0,
    resets: 0,
    truncated: 0,
    corrupted: 0,
    answered502: 0,
    requests: 0,
  };
  private current: Faults = {};
  /** @internal */
  readonly shaperUp = new Shaper();
  /** @internal */
  readonly shaperDown = new Shaper();
  /** @internal */
  readonly rand: () => number;
  private readonly conns = new Set<Conn>();
  /** Every socket still open, whatever state its Conn is in: close() destroys them all. */
  private readonly sockets = new Set<net.Socket>();

  /** @internal */
  track(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.once('close', () => this.sockets.delete(sock));
  }
  private target: Target;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly server: net.Server,
    target: Target,
    seed: number,
    readonly port: number,
  ) {
    this.target = { ...target };
    this.rand = mulberry32(seed);
  }

  static async start(opts: { target: Target; listenPort?: number; faults?: Faults; seed?: number }): Promise<FaultProxy> {
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: opts.listenPort ?? 0 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as net.AddressInfo).port;
    const seed = opts.seed ?? (Math.random() * 2 ** 32) >>> 0;
    const proxy = new FaultProxy(server, opts.target, seed, port);
    server.on('connection', (s) => proxy.onConnection(s));
    server.on('error', noop); // accept errors (EMFILE...) must not crash the test process
    if (opts.faults) proxy.set(opts.faults);
    return proxy;
  }

  /** The faults in force (change them with set()/clear()). */
  get faults(): Readonly<Faults> {
    return this.current;
  }

  url(scheme = 'http'): string {
    return `${scheme}://127.0.0.1:${this.port}`;
  }

  /** New connections go to `target` (e.g. an upstream restarted on another port). */
  retarget(target: Target): void {
    this.target = { ...target };
  }

  /** Change faults at run time; applies to new data on existing connections too. An explicit
   *  `undefined` (or 0/false) turns a fault off. */
  set(faults: Partial<Faults>): void {
    const next: Faults = { ...this.current };
    for (const [k, v] of Object.entries(faults) as [keyof Faults, Faults[keyof Faults]][]) {
      if (v === undefined || v === false || v === 0) delete next[k];
      else (next as Record<string, unknown>)[k] = v;
    }
    this.current = next;
    this.apply();
  }

  clear(): void {
    this.current = {};
    this.apply();
  }

  /** Reset every open connection now (e.g. cut a long-lived event stream). */
  cutAll(): void {
    for (const c of [...this.conns]) c.reset();
  }

  get openConnections(): number {
    return this.conns.size;
  }

  /** Destroys the listener and every connection; resolves once all sockets are closed. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const serverClosed = new Promise<void>((r) => this.server.close(() => r()));
      const conns = [...this.conns];
      for (const c of conns) c.kill(false);
      this.shaperUp.release();
      this.shaperDown.release();
      // Bounded: a socket whose 'close' never comes (seen after a blackhole) must not hang a test.
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((r) => (timer = setTimeout(r, 2000)));
      await Promise.race([Promise.all([serverClosed, ...conns.map((c) => c.closed)]), bound]);
      clearTimeout(timer);
      for (const sock of this.sockets) sock.destroy();
    })();
    return this.closing;
  }

  /** @internal */
  requestFaultsOn(): boolean {
    const f = this.faults;
    return !!(f.truncateRate || f.corruptRate || f.http502Rate);
  }

  /** @internal */
  pathMatches(path: string): boolean {
    const re = this.faults.matchPath;
    if (!re) return true;
    re.lastIndex = 0; // a /g or /y regexp keeps state between test() calls
    return re.test(path);
  }

  /** @internal */
  forget(c: Conn): void {
    if (this.conns.delete(c)) this.stats.open--;
  }

  private onConnection(client: net.Socket): void {
    this.stats.connections++;
    client.on('error', noop);
    this.track(client);
    if (this.closing) {
      client.destroy();
      return;
    }
    if (this.faults.refuse) {
      this.stats.refused++;
      hardClose(client, true);
      return;
    }
    this.stats.open++;
    this.conns.add(new Conn(this, client, this.target));
  }

  private apply(): void {
    const f = this.faults;
    const waiting = [
      ...this.shaperUp.setRate(f.bandwidthUpBytesPerSec ?? f.bandwidthBytesPerSec ?? 0),
      ...this.shaperDown.setRate(f.bandwidthDownBytesPerSec ?? f.bandwidthBytesPerSec ?? 0),
    ];
    for (const c of this.conns) {
      c.up.kick();
      c.down.kick();
    }
    for (const p of waiting) p.kick();
  }
}
