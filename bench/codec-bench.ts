/**
 * Codec benchmark: which compressor is the default. Compresses and
 * decompresses the non-zero 1 MiB blocks of a real ext4 image (files from
 * /usr) with every codec Lifeboat offers, one core, and prints MB/s and ratio.
 *
 *   npm run bench:codec      (BENCH_DIR=bench-work: reuses bench-work/vm.img if present)
 */
import { existsSync, mkdirSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { compressBlock, decompressBlock, type CompressionSetting } from '../src/compress/codec.js';
import { buildSampleImage } from './sample-image.js';

const MiB = 1024 * 1024;
const work = resolve(process.env['BENCH_DIR'] ?? 'bench-work');
mkdirSync(work, { recursive: true });
let image = join(work, 'vm.img');
if (!existsSync(image)) {
  image = join(work, 'codec.img');
  buildSampleImage(image, 768 * MiB, 400 * MiB);
}

const zero = Buffer.alloc(MiB);
const blocks: Buffer[] = [];
const fd = openSync(image, 'r');
const size = statSync(image).size;
for (let off = 0; off < size && blocks.length < 512; off += MiB) {
  const b = Buffer.alloc(MiB);
  readSync(fd, b, 0, MiB, off);
  if (!b.equals(zero)) blocks.push(b);
}
closeSync(fd);
const raw = blocks.length * MiB;
console.log(`${blocks.length} non-zero 1 MiB blocks of ${image}`);
console.log('codec     compress MB/s  decompress MB/s  ratio');
const settings: CompressionSetting[] = [
  { codec: 'lz4', level: 0 },
  { codec: 'zstd', level: 1 },
  { codec: 'zstd', level: 3 },
  { codec: 'zstd', level: 9 },
];
for (const s of settings) {
  let t0 = process.hrtime.bigint();
  const out = blocks.map((b) => compressBlock(s, b));
  const ct = Number(process.hrtime.bigint() - t0) / 1e9;
  const stored = out.reduce((n, o) => n + o.bytes.length, 0);
  t0 = process.hrtime.bigint();
  for (const o of out) decompressBlock(o.codec, o.bytes, MiB);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  const name = s.codec === 'zstd' ? `zstd:${s.level}` : s.codec;
  console.log(
    `${name.padEnd(10)}${(raw / 1e6 / ct).toFixed(0).padStart(13)}  ${(raw / 1e6 / dt).toFixed(0).padStart(15)}  ${(raw / stored).toFixed(2).padStart(5)}`,
  );
}
