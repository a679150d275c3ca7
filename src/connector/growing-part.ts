// An offload part PUT while it is still being packed. A part would otherwise reach the link
// only once all of it is compressed (through the WAN bench's link: 100-150 ms with nothing sent
// before part 1, and again before part 2). The PUT announces a full part (Content-Length = part
// size) and sends bytes as they are packed. If the result ends inside the part, the body fails
// before that length is reached, so the store never keeps it, and the shorter part is PUT again
// whole.

export class GrowingPart {
  private fill = 0;
  private wake: (() => void) | null = null;
  private ended: Buffer | null = null;
  private resolveFinished!: (part: Buffer) => void;
  /** The finished part: `size` bytes, or fewer when the result ended inside it. */
  private readonly finished: Promise<Buffer>;

  /** buf: the buffer the packer fills (never rewritten below its fill mark). */
  constructor(
    private readonly buf: Buffer,
    readonly size: number,
  ) {
    this.finished = new Promise((r) => (this.resolveFinished = r));
  }

  /** The packer has written the first `fill` bytes. */
  grew(fill: number): void {
    this.fill = fill;
    this.poke();
  }

  /** The packer is done with this part (full, or shorter at the end of the result). */
  finish(part: Buffer): void {
    this.ended = part;
    this.fill = part.length;
    this.resolveFinished(part);
    this.poke();
  }

  /**
   * The finished part, or the signal's reason once it aborts: packing that stopped (a failed
   * upload, a cancelled command) never finishes the part, and its PUT must not wait for it.
   */
  whenFinished(signal: AbortSignal): Promise<Buffer> {
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      void this.finished.then((part) => {
        signal.removeEventListener('abort', onAbort);
        resolve(part);
      });
    });
  }

  /** The finished part, once known. */
  get done(): Buffer | null {
    return this.ended;
  }

  /** True once the part is finished with exactly `size` bytes, so the streamed body was whole. */
  get full(): boolean {
    return this.ended?.length === this.size;
  }

  /** The PUT body: bytes as they are packed. Throws if the part ends short or the signal aborts. */
  async *body(signal: AbortSignal): AsyncGenerator<Buffer> {
    const onAbort = () => this.poke();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      let sent = 0;
      while (sent < this.size) {
        signal.throwIfAborted();
        if (this.fill > sent) {
          const end = this.fill;
          yield this.buf.subarray(sent, end);
          sent = end;
        } else if (this.ended) {
          throw new Error(`the part ended at ${this.ended.length} of ${this.size} bytes`);
        } else {
          await new Promise<void>((r) => (this.wake = r));
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
