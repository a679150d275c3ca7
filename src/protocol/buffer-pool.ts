// Reusable buffers for chunk bodies: the router's upload bodies on their way to a stream client,
// the connector's file reads and object-store parts.
//
// Why, on the connector: a fresh 512 KiB buffer per chunk is a fresh mapping of memory per chunk
// (glibc maps allocations this large on their own and unmaps them when collected), and every
// page of it faults in on first write; on a virtual machine that was a large share of the
// connector's CPU per MB. A reused buffer is already mapped.
// Why, on the router: a chunk waiting in a slow client's window lives for seconds, long enough for V8 to move
// its Buffer to the old generation, where the 512 KiB behind it is only freed at the next full
// collection — which external memory triggers only after tens of MB. Copying each body into a
// buffer that is handed back once the client's socket has taken it keeps the router's memory at
// the window it promises, with no garbage per chunk. A buffer that is never handed back (a sync
// result keeps it, a request fails) is simply collected: returning one is an optimisation, and
// returning one still in use is the only mistake to avoid (see Lease).

export class BufferPool {
  private readonly free: Buffer[] = [];
  /** Buffers handed out since the idle check was last scheduled. */
  private taken = 0;
  private trimTimer: NodeJS.Timeout | null = null;

  /**
   * size: bytes per buffer; maxFree: buffers kept for reuse (the rest are left to the GC).
   * idle: past `keep` free buffers, a pool that hands none out for `ms` lets the extra go, so
   * the memory of a burst is not held for good.
   */
  constructor(
    readonly size: number,
    private readonly maxFree: number,
    private readonly idle?: { keep: number; ms: number },
  ) {}

  /** A buffer of `size` bytes, with a one-time release. */
  acquire(): Lease {
    this.taken++;
    return new Lease(this.free.pop() ?? Buffer.allocUnsafeSlow(this.size), this);
  }

  /** Buffers kept for reuse right now. */
  get freeCount(): number {
    return this.free.length;
  }

  /** @internal used by Lease.release */
  giveBack(buf: Buffer): void {
    if (this.free.length < this.maxFree) this.free.push(buf);
    if (this.idle && !this.trimTimer && this.free.length > this.idle.keep) this.scheduleTrim(this.idle);
  }

  private scheduleTrim(idle: { keep: number; ms: number }): void {
    this.taken = 0;
    this.trimTimer = setTimeout(() => {
      this.trimTimer = null;
      if (this.taken === 0) this.free.length = Math.min(this.free.length, idle.keep);
      else if (this.free.length > idle.keep) this.scheduleTrim(idle);
    }, idle.ms);
    this.trimTimer.unref();
  }
}

/** One pooled buffer. release() hands it back once; later calls do nothing. */
export class Lease {
  private released = false;
  constructor(
    readonly buf: Buffer,
    private readonly pool: BufferPool,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    this.pool.giveBack(this.buf);
  }
}

const shared = new Map<number, BufferPool>();

/** The process-wide pool of `size`-byte buffers (created with maxFree on first use). */
export function sharedPool(size: number, maxFree: number): BufferPool {
  let p = shared.get(size);
  if (!p) shared.set(size, (p = new BufferPool(size, maxFree)));
  return p;
}

/**
 * Buffers handed out to a consumer that gives them back by identity (the buffer, or a view
 * into it, as it was handed out). Whatever is never given back is left to the GC.
 */
export class Lent {
  private readonly out = new Map<Buffer, Lease>();

  /** Hands out `view` (the lease's buffer or a view into it). */
  lend(view: Buffer, lease: Lease): Buffer {
    this.out.set(view, lease);
    return view;
  }

  giveBack(view: Buffer): void {
    this.out.get(view)?.release();
    this.out.delete(view);
  }

  /** Stops tracking: buffers still out are not reused. */
  forget(): void {
    this.out.clear();
  }
}
