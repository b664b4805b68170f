#!/usr/bin/env node
/**
 * Bundles the CLI after `tsc`: dist/cli/main.js becomes one entry file plus a chunk per lazily loaded
 * command (dist/cli/chunk-*.js). Node then reads a few files instead of resolving and compiling ~130
 * modules at every start (measured: `--version` 0.21 → 0.15 CPU s, the start of `init` about 0.1 s less).
 * tsc's per-module output stays in dist/ for the tests and benchmarks that import it.
 * Chunks stay in dist/cli/ so that paths relative to a module (package.json, main.js) resolve as in tsc's layout.
 */
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(root, 'dist/cli');
for (const f of readdirSync(outdir)) if (/^chunk-.*\.js$/.test(f)) rmSync(path.join(outdir, f));

/**
 * pg asks at load time whether it runs in a Cloudflare Worker; on Node 20 the question touches the `Response`
 * global, which loads undici and builds a Response (12–14 ms of every start). pgferry runs on Node only.
 * The build fails if pg's code no longer has the function, so that a pg upgrade cannot drop this silently.
 */
const nodeOnlyPg = {
  name: 'pg-node-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]pg[\\/]lib[\\/]stream\.js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8');
      const head = 'function isCloudflareRuntime() {';
      if (!src.includes(head)) throw new Error(`${args.path}: isCloudflareRuntime() not found; review the pg-node-only step of scripts/bundle.mjs`);
      return { contents: src.replace(head, `${head}\n  return false;`), loader: 'js' };
    });
  },
};

/**
 * yargs and its layout library import string-width and wrap-ansi at load time, whose Unicode tables and
 * Intl.Segmenter cost ~20 ms of every start; they are needed only to lay out help and error text. Those
 * imports get a stand-in that loads the real module at its first call (esbuild wraps a require()d ESM
 * module so that it runs then).
 */
const lazyLayout = {
  name: 'lazy-layout',
  setup(b) {
    b.onResolve({ filter: /^(string-width|wrap-ansi)$/ }, async (args) => {
      if (args.pluginData === 'real' || !/node_modules[\\/](yargs|cliui)[\\/]/.test(args.importer)) return undefined;
      const real = await b.resolve(args.path, { resolveDir: args.resolveDir, kind: args.kind, importer: args.importer, pluginData: 'real' });
      if (real.errors.length) return { errors: real.errors };
      return { path: real.path, namespace: 'lazy-layout' };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-layout' }, (args) => ({
      contents: `let real;\nexport default function lazy(...a) { return (real ??= require(${JSON.stringify(args.path)}).default)(...a); }\n`,
      resolveDir: path.dirname(args.path),
      loader: 'js',
    }));
  },
};

await build({
  entryPoints: { main: path.join(root, 'src/cli/main.ts') },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunk-[hash]',
  allowOverwrite: true,
  // yargs is bundled too (its ~40 files took 40–50 ms of every start); its locale files are then not found, which
  // only matters for locales other than the English that program.ts fixes. pg-native is an optional addon pg never needs here.
  external: ['pg-native'],
  // CommonJS dependencies bundled into ESM call require() for node's built-ins.
  banner: { js: "import { createRequire as __pgferryRequire } from 'node:module';\nconst require = __pgferryRequire(import.meta.url);" },
  plugins: [nodeOnlyPg, lazyLayout],
  logLevel: 'warning',
});
