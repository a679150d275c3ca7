// The browser side: the data preview page at `/`, the API docs page at `/docs`, and their
// assets under `/ui/` — including apache-arrow's browser bundle straight from node_modules
// (no CDN: routers often run where the internet is not reachable).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';
import { RelayError } from '../../protocol/errors.js';
import type { Env, RouterDeps } from '../context.js';
import { openApiDocument } from '../openapi.js';

/** The repository (or image) root: this file is dist/src/router/routes/web.js. */
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const ARROW_DIR = dirname(fileURLToPath(import.meta.resolve('apache-arrow')));

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: join(ROOT, 'web/index.html'), type: 'text/html; charset=utf-8' },
  '/docs': { file: join(ROOT, 'web/docs.html'), type: 'text/html; charset=utf-8' },
  '/ui/style.css': { file: join(ROOT, 'web/style.css'), type: 'text/css; charset=utf-8' },
  '/ui/app.js': { file: join(ROOT, 'dist/web/app.js'), type: 'text/javascript; charset=utf-8' },
  '/ui/docs.js': { file: join(ROOT, 'dist/web/docs.js'), type: 'text/javascript; charset=utf-8' },
  // The closure-compiled UMD build: one file that defines the global `Arrow`.
  '/ui/arrow.js': { file: join(ARROW_DIR, 'Arrow.es2015.min.js'), type: 'text/javascript; charset=utf-8' },
};

// Everything the pages load comes from this origin; result downloads are plain links.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Loaded {
  body: Buffer;
  etag: string;
}

export function webRoutes(app: Hono<Env>, _deps: RouterDeps): void {
  // Read once on first use; a missing file (no `npm run build`) is reported, not cached.
  const cache = new Map<string, Promise<Loaded>>();
  const load = (path: string): Promise<Loaded> => {
    let p = cache.get(path);
    if (!p) {
      p = readFile(ASSETS[path]!.file).then((body) => ({ body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }));
      p.catch(() => cache.delete(path));
      cache.set(path, p);
    }
    return p;
  };

  let spec: string | undefined;
  app.get('/openapi.json', (c) => {
    spec ??= JSON.stringify(openApiDocument(packageVersion()));
    c.header('content-type', 'application/json');
    c.header('cache-control', 'no-cache');
    return c.body(spec);
  });

  for (const path of Object.keys(ASSETS)) {
    app.get(path, async (c) => {
      let asset: Loaded;
      try {
        asset = await load(path);
      } catch (err) {
        throw new RelayError('INTERNAL', `web asset ${path} is missing (${(err as Error).message}); run npm run build`);
      }
      c.header('etag', asset.etag);
      c.header('cache-control', 'no-cache');
      c.header('x-content-type-options', 'nosniff');
      if (path === '/' || path === '/docs') {
        c.header('content-security-policy', CSP);
        c.header('referrer-policy', 'no-referrer');
      }
      if (c.req.header('if-none-match') === asset.etag) return c.body(null, 304);
      c.header('content-type', ASSETS[path]!.type);
      return c.body(new Uint8Array(asset.body));
    });
  }
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}
