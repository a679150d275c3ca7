// What every binary upload carries (PROTOCOL.md §3.3), parsed and checked in one place.
import type { IncomingMessage } from 'node:http';
import { CHECKSUM_RE, xxh64 } from '../../protocol/checksum.js';
import { decodeChunk, type Encoding } from '../../protocol/codec.js';
import { RelayError } from '../../protocol/errors.js';
import { HEADERS } from '../../protocol/wire.js';
import { readBody } from '../http.js';

export interface Upload {
  attempt: number;
  checksum: string;
  encoding: Encoding;
  decodedLength: number;
  /** The body as sent. */
  body: Buffer;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function intHeader(req: IncomingMessage, name: string, max: number): number {
  const v = header(req, name);
  if (v === undefined || !/^\d{1,16}$/.test(v) || Number(v) > max) throw new RelayError('BAD_REQUEST', `header ${name} must be an integer from 0 to ${max}`);
  return Number(v);
}

export type UploadHead = Omit<Upload, 'body'>;

/** The headers of one upload, checked before its body is read. */
export function uploadHead(req: IncomingMessage, chunkSize: number): UploadHead {
  const attempt = intHeader(req, HEADERS.attempt, 1000);
  if (attempt < 1) throw new RelayError('BAD_REQUEST', `header ${HEADERS.attempt} must be at least 1`);
  const checksum = header(req, HEADERS.checksum);
  if (!checksum || !CHECKSUM_RE.test(checksum)) throw new RelayError('BAD_REQUEST', `header ${HEADERS.checksum} must be 16 lowercase hex digits (xxh64)`);
  const ce = (header(req, 'content-encoding') ?? 'identity').trim().toLowerCase();
  if (ce !== 'zstd' && ce !== 'identity') throw new RelayError('BAD_REQUEST', `Content-Encoding ${ce} is not supported (zstd or none)`);
  const decodedLength = intHeader(req, HEADERS.decodedLength, Number.MAX_SAFE_INTEGER);
  if (decodedLength > chunkSize) throw new RelayError('RESULT_TOO_LARGE', `chunk of ${decodedLength} decoded bytes is over the chunk size ${chunkSize}`);
  return { attempt, checksum, encoding: ce === 'zstd' ? 'zstd' : 'identity', decodedLength };
}

/** The most bytes an upload body may have: a zstd frame of chunkSize bytes is never much larger. */
export const uploadLimit = (chunkSize: number) => chunkSize + 1024;

/**
 * Reads the body of an upload whose head was checked (into `into`, a pooled buffer of
 * uploadLimit bytes, when given), and verifies its xxh64 as sent.
 */
export async function uploadBody(req: IncomingMessage, head: UploadHead, chunkSize: number, into?: Buffer): Promise<Upload> {
  const body = await readBody(req, uploadLimit(chunkSize), 'RESULT_TOO_LARGE', into);
  const got = xxh64(body);
  if (got !== head.checksum) throw new RelayError('CHECKSUM_MISMATCH', `body checksum ${got} does not match ${HEADERS.checksum} ${head.checksum}: resend`);
  return { ...head, body };
}

/** Reads and verifies one upload: headers, size limit, xxh64 of the body as sent. */
export async function readUpload(req: IncomingMessage, chunkSize: number): Promise<Upload> {
  return uploadBody(req, uploadHead(req, chunkSize), chunkSize);
}

export function decodeUpload(u: Upload, into?: Buffer): Promise<Buffer> {
  return decodeChunk(u.body, u.encoding, u.decodedLength, into);
}
