// Bundles the CLI's entry (dist/src/cli/main.js, from tsc) with the request commands into
// dist/src/cli/main.bundle.js and chunks in dist/src/cli/bundle/ (one per lazily loaded part),
// for bin/relay.js.
// Why: Node 20 has no compile cache, and its ES module loader costs about half a millisecond per
// file. `relay request-*` loaded ~170 files (zod alone ~100, 64 of them locales it never uses);
// bundled, zod is tree-shaken to what the schemas use, and the command starts ~75 ms sooner.
// Only pure-JS packages of the request path are bundled. Everything else stays external: native
// addons, WebAssembly packages that load files next to themselves, undici (client/undici.ts
// requires single files of it), and the router's and connector's modules (main.ts imports them by
// a computed path, so they are the files tsc wrote).
import { rm } from 'node:fs/promises';
import { build } from 'esbuild';

const BUNDLED = new Set(['zod', 'commander', 'cli-progress', 'xxhash-wasm', 'any-signal']);
const pkgOf = (spec) => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');

// Chunk names carry a hash: the last build's must not pile up.
await rm('dist/src/cli/bundle', { recursive: true, force: true });
await build({
  entryPoints: { 'main.bundle': 'dist/src/cli/main.js' },
  outdir: 'dist/src/cli',
  chunkNames: 'bundle/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  logLevel: 'warning',
  // CommonJS packages (commander) require Node's built-ins; an ES module has no `require`.
  banner: { js: "import { createRequire as relayCreateRequire } from 'node:module'; const require = relayCreateRequire(import.meta.url);" },
  plugins: [
    {
      name: 'relay-externals',
      setup(b) {
        // Bare imports from relay's own files: bundled only if listed (their own dependencies follow them in).
        b.onResolve({ filter: /^[^./]/ }, (args) => {
          if (args.importer.includes('/node_modules/') || args.path.startsWith('node:')) return undefined;
          return BUNDLED.has(pkgOf(args.path)) ? undefined : { external: true };
        });
      },
    },
  ],
});
