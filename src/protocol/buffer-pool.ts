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

  /** size: bytes per buffer; maxFree: buffers kept for reuse (the rest are left to the GC). */
  constructor(
    readonly size: number,
    private readonly maxFree: number,
  ) {}

  /** A buffer of `size` bytes, with a one-time release. */
  acquire(): Lease {
    return new Lease(this.free.pop() ?? Buffer.allocUnsafeSlow(this.size), this);
  }

  /** @internal used by Lease.release */
  giveBack(buf: Buffer): void {
    if (this.free.length < this.maxFree) this.free.push(buf);
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
