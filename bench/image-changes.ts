/** Changes to a benchmark's disk image between two backups, the same for every tool compared. */
import { closeSync, openSync, readFileSync, readdirSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { compress as zstdCompress } from 'zstd-napi';
import { prng } from '../src/testing/prng.js';

const MiB = 1024 * 1024;

/** Real file bytes to write as "new data": compressible like the image's own content. */
function realBytes(n: number, salt: number): Buffer {
  const out = Buffer.alloc(n);
  let at = 0;
  for (const dir of ['/usr/bin', '/usr/lib/x86_64-linux-gnu']) {
    for (const f of readdirSync(dir).sort()) {
      if (at >= n) break;
      try {
        const b = readFileSync(join(dir, f));
        at += b.copy(out, at, 0, Math.min(b.length, n - at));
      } catch {
        /* not a readable file */
      }
    }
  }
  for (let i = 0; i < n; i += 4096) out[i] = (out[i]! + salt) & 0xff; // new content, same compressibility
  return out;
}

/** `fraction` of the image's 1 MiB blocks rewritten with new real data; returns the bytes changed, raw and after zstd-1. */
export function mutateBlocks(image: string, fraction: number, seed: number): { changedBytes: number; changedCompressed: number } {
  const size = statSync(image).size;
  const blocks = Math.floor(size / MiB);
  const count = Math.round(blocks * fraction);
  const pool = realBytes(count * MiB, seed);
  const fd = openSync(image, 'r+');
  const rand = prng(seed);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(Math.floor(rand() * blocks));
  let changedCompressed = 0;
  [...chosen].forEach((bi, i) => {
    const data = pool.subarray(i * MiB, (i + 1) * MiB);
    writeSync(fd, data, 0, MiB, bi * MiB);
    changedCompressed += zstdCompress(data, { compressionLevel: 1 }).length;
  });
  closeSync(fd);
  return { changedBytes: count * MiB, changedCompressed };
}

/** `writes` scattered 4 KiB pages changed by one byte each; returns the bytes written. */
export function mutateScattered(image: string, writes: number, seed: number): number {
  const size = statSync(image).size;
  const fd = openSync(image, 'r+');
  const page = Buffer.alloc(4096);
  const rand = prng(seed);
  for (let i = 0; i < writes; i++) {
    const off = Math.floor(rand() * Math.floor(size / 4096)) * 4096;
    readSync(fd, page, 0, 4096, off);
    page[17] = (page[17]! + 1) & 0xff;
    writeSync(fd, page, 0, 4096, off);
  }
  closeSync(fd);
  return writes * 4096;
}
