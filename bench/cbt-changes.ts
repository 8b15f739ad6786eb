import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MiB } from './bench-util.js';
import { prng } from '../src/testing/prng.js';

/**
 * Rewrites ~5% of the 1 MiB blocks of `img` (a qcow2 converted from `raw`)
 * through qemu-io, so QEMU's dirty bitmaps see the writes, with bytes of the
 * image's own files (as compressible as the rest), salted so each block is new.
 * `scratch` holds the blocks qemu-io reads. Returns how many blocks of how many.
 */
export function rewriteFivePercent(raw: string, img: string, scratch: string): { rewritten: number; blocks: number } {
  const rand = prng(11);
  const blocks = Math.floor(statSync(raw).size / MiB);
  const cmds: string[] = [];
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch);
  // New data: 64 MiB of the image's own files (from its middle), salted below.
  const sample = Buffer.alloc(64 * MiB);
  const fd = openSync(raw, 'r');
  readSync(fd, sample, 0, sample.length, 256 * MiB);
  closeSync(fd);
  const rewritten = Math.ceil(blocks * 0.05);
  for (let k = 0; k < rewritten; k++) {
    const file = join(scratch, `b${k}`);
    const from = Math.floor(rand() * 63) * MiB;
    const chunk = Buffer.from(sample.subarray(from, from + MiB));
    for (let i = 0; i < chunk.length; i += 512) chunk[i] = (chunk[i]! + k + 1) & 0xff;
    writeFileSync(file, chunk);
    cmds.push('-c', `write -s ${file} ${Math.floor(rand() * blocks) * MiB} ${MiB}`);
  }
  execFileSync('qemu-io', ['-f', 'qcow2', ...cmds, img], { stdio: 'ignore' });
  return { rewritten, blocks };
}
