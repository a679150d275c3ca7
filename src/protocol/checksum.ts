// xxh64 (seed 0) as 16 lowercase hex digits: the checksum of every chunk and of every result.
import xxhash from 'xxhash-wasm';

const api = await xxhash();

export function xxh64(data: Uint8Array): string {
  return api.h64Raw(data).toString(16).padStart(16, '0');
}

/** Incremental xxh64 over a result that arrives in pieces. */
export class Xxh64Stream {
  private readonly state = api.create64();
  update(data: Uint8Array): this {
    this.state.update(data);
    return this;
  }
  digest(): string {
    return this.state.digest().toString(16).padStart(16, '0');
  }
}

export const CHECKSUM_RE = /^[0-9a-f]{16}$/;
