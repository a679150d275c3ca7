// Frees the socket buffers of bodies promptly (the router's chunk uploads, the client's answers).
//
// Node reads every socket into a fresh 64 KiB buffer; a body read from them leaves dead buffers
// behind. They die young, but their memory is outside V8's heap and is only given back when the
// young generation is next collected, which V8 schedules by the size of JS objects, not of this
// external memory: with a 16 MB semi-space, tens of MB of dead socket buffers wait for it. Each
// new one is then fresh memory, faulted in page by page (8 us a page on a VM), and glibc hands
// the freed ones back to the kernel before they can be reused. A scavenge after every few MB
// read keeps the waste small and the memory reused; it costs well under a millisecond. 100 MB
// read through undici and dropped: 263 ms of CPU, 134 ms with a scavenge every 8 MB, 61 ms
// every 2 MB. Bytes that trickle in are collected a second after they were read at the latest.
// Without --expose-gc (set here, before first use) this does nothing.
import v8 from 'node:v8';
import vm from 'node:vm';

export type Gc = (opts?: { type?: 'minor' | 'major' }) => void;

let gc: Gc | null | undefined;

function load(): Gc | null {
  try {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc') as Gc;
  } catch {
    return null;
  }
}

export class YoungGc {
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly collect: Gc | null;

  /**
   * everyBytes: bytes read between two scavenges. maxDelayMs: how long bytes read may wait for
   * one when fewer arrive (a slow client's stream: at 1 MB/s the router's 8 MiB took 8 s, and its
   * RSS carried them all that time). `gcFn` replaces V8's (tests).
   */
  constructor(
    private readonly everyBytes: number,
    private readonly maxDelayMs = 1000,
    gcFn?: Gc,
  ) {
    this.collect = gcFn ?? (gc ??= load());
  }

  /** Counts bytes read from sockets; scavenges once everyBytes have been read, or maxDelayMs after the first of fewer. */
  read(bytes: number): void {
    if (!this.collect || bytes <= 0) return;
    this.pending += bytes;
    if (this.pending >= this.everyBytes) {
      this.scavenge();
      return;
    }
    // At full speed everyBytes comes first and this timer finds little or nothing: at most one
    // extra scavenge a second. Unreferenced: it never keeps a process alive.
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      if (this.pending > 0) this.scavenge();
    }, this.maxDelayMs).unref();
  }

  private scavenge(): void {
    this.pending = 0;
    this.collect!({ type: 'minor' });
  }
}
