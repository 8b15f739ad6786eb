// Bundles the web console (web/) into dist/console with esbuild: ESM with
// code splitting (uPlot and noVNC load only on the pages that import them),
// minified, hashed file names (cached for good: a new build has new names),
// index.html pointing at them, and a .br and .gz beside each file for
// @fastify/static's preCompressed. Run by `npm run build` and `prepare`.
import { build } from 'esbuild';
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { brotliCompress, constants, gzip } from 'node:zlib';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const web = join(root, 'web');
const out = join(root, 'dist', 'console');
const started = performance.now();

await rm(out, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: { main: join(web, 'src', 'main.tsx'), style: join(web, 'src', 'style.css') },
  outdir: out,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: false,
  entryNames: '[name]-[hash]',
  chunkNames: 'chunks/[name]-[hash]',
  assetNames: 'assets/[name]-[hash]',
  tsconfig: join(web, 'tsconfig.json'),
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

// The entry files' hashed names go into index.html (its <script> and <link> have no inline content: CSP).
const entryFile = (entry) => {
  const found = Object.entries(result.metafile.outputs).find(([, o]) => o.entryPoint !== undefined && basename(o.entryPoint) === entry);
  if (!found) throw new Error(`esbuild wrote no output for ${entry}`);
  return '/' + relative(out, resolve(root, found[0])).split('\\').join('/');
};
const html = (await readFile(join(web, 'index.html'), 'utf8')).replace('/main.js', entryFile('main.tsx')).replace('/main.css', entryFile('style.css'));
await writeFile(join(out, 'index.html'), html);

const brotli = promisify(brotliCompress);
const gz = promisify(gzip);
async function* files(dir) {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else yield p;
  }
}
let raw = 0;
let br = 0;
for await (const f of files(out)) {
  if (!/\.(js|css|html|svg|json)$/.test(f)) continue;
  const data = await readFile(f);
  const b = await brotli(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length } });
  await writeFile(`${f}.br`, b);
  await writeFile(`${f}.gz`, await gz(data, { level: 9 }));
  raw += data.length;
  br += b.length;
}
const ms = Math.round(performance.now() - started);
const index = await stat(join(out, 'index.html'));
if (process.env.LIFEBOAT_BUILD_QUIET !== '1')
  console.log(`console: dist/console in ${ms} ms (${(raw / 1000).toFixed(1)} kB, ${(br / 1000).toFixed(1)} kB brotli; index.html ${index.size} B)`);
