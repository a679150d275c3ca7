// Frees the socket buffers of chunk bodies promptly.
//
// Node reads every socket into a fresh 64 KiB buffer; a chunk body copied out of them leaves
// ~512 KiB of dead buffers per chunk. They die young, but their memory is outside V8's heap and
// is only given back when the young generation is next collected, which V8 schedules by the
// size of JS objects, not of this external memory: with a 16 MB semi-space, tens of MB of dead
// socket buffers wait for it. A scavenge after every few MB of bodies read keeps that waste
// small; it costs well under a millisecond. Without --expose-gc (set here, before first use)
// this does nothing.
import v8 from 'node:v8';
import vm from 'node:vm';

type Gc = (opts?: { type?: 'minor' | 'major' }) => void;

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

  /** everyBytes: bytes read between two scavenges. */
  constructor(private readonly everyBytes: number) {
    gc ??= load();
  }

  /** Counts bytes read from sockets; scavenges once everyBytes have been read since the last one. */
  read(bytes: number): void {
    this.pending += bytes;
    if (this.pending < this.everyBytes || !gc) return;
    this.pending = 0;
    gc({ type: 'minor' });
  }
}
