// The two pieces of undici the client uses, loaded on their own. undici's index loads all of
// it (fetch, WebSocket, caches, mocks: ~90 ms more at start), and its cookies module reads
// globalThis.Headers, which makes Node load the copy of undici it bundles and compile that
// one's llhttp WebAssembly on a background thread, which a finishing process then waits for
// before it can exit. `relay request-stream` of 1 KB, 3 pairs: 0.58-0.61 → 0.52-0.54 s.
import { createRequire } from 'node:module';
import type { Agent as UndiciAgent, Dispatcher } from 'undici';

const require = createRequire(import.meta.url);

export const Agent = require('undici/lib/dispatcher/agent.js') as typeof UndiciAgent;
export type Agent = UndiciAgent;

const apiRequest = require('undici/lib/api/api-request.js') as (this: Dispatcher, opts: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;

/** undici's `request(url, opts)` on a given dispatcher (its index adds this to every dispatcher). */
export function request(dispatcher: Dispatcher, url: URL, opts: Omit<Dispatcher.RequestOptions, 'origin' | 'path'>): Promise<Dispatcher.ResponseData> {
  return apiRequest.call(dispatcher, { ...opts, origin: url.origin, path: `${url.pathname}${url.search}` });
}
