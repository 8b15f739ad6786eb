import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CowOverlay, type ReadableDisk } from '../src/blockdev/index.js';
import { isLifeboatError } from '../src/core/errors.js';
import { FaultyStorage, type Fault } from '../src/testing/faulty-storage.js';
import type { StorageOp } from '../src/storage/index.js';
import { randomBytes, rng, tempDir } from './helpers.js';

const KiB = 1024;
const G = 64 * KiB;

/**
 * The overlay against a byte model: random reads, partial, whole-granule and
 * multi-granule writes, flushes awaited or left running, injected storage
 * faults and reopens ("crashes": the process's page cache survives, the map
 * keeps only what flushes logged). After every reopen:
 * - a granule that a successful flush covered reads as last written, or as
 *   it was when that flush was called (a later first write of a granule that
 *   then held base bytes is logged by a later flush only);
 * - any other granule reads as last written or as the base, nothing else;
 * - bytes of a failed write may be anything, until written again.
 */
async function runModel(seed: number, dir: string): Promise<{ ops: number; faults: number; reopens: number }> {
  const rand = rng(seed);
  const size = 32 * G - 4 * KiB; // the last granule is short
  const granules = Math.ceil(size / G);
  const baseBytes = randomBytes(rand, size);
  const frozen = Buffer.from(baseBytes);
  const base: ReadableDisk = { size, read: (o, l) => Promise.resolve(frozen.subarray(o, o + l)) };
  const current = Buffer.from(baseBytes);
  const unknown = new Uint8Array(size);
  /** Granules some completed write touched. */
  const touched = new Set<number>();
  /** Per granule a successful flush covered: its bytes (and which were unknown) when that flush was called. */
  const durable = new Map<number, { bytes: Buffer; unknown: Uint8Array }>();
  let storage = new FaultyStorage();
  let ov = await CowOverlay.open(base, join(dir, 'ov'), { storage });
  let broken = false;
  const running: Promise<void>[] = [];
  let faults = 0;
  let reopens = 0;

  const granulesOf = (off: number, len: number): number[] => {
    const out: number[] = [];
    for (let g = Math.floor(off / G); g <= Math.floor((off + len - 1) / G); g++) out.push(g);
    return out;
  };
  const sameKnown = (got: Buffer, off: number, expected: Buffer, mask: Uint8Array = unknown, at = off): boolean => {
    for (let i = 0; i < got.length; i++) if (mask[at + i] === 0 && got[i] !== expected[at + i]) return false;
    return true;
  };
  const startFlush = (): Promise<void> => {
    const covers = [...touched].map((g) => {
      const off = g * G;
      const end = Math.min(size, off + G);
      return { g, bytes: Buffer.from(current.subarray(off, end)), unknown: unknown.slice(off, end) };
    });
    const p = ov.flush().then(
      () => {
        for (const c of covers) durable.set(c.g, c);
      },
      (err: unknown) => {
        assert.ok(isLifeboatError(err), `a failed flush is a coded error: ${String(err)}`);
        if (isLifeboatError(err, 'LFB_ERR_IO') && /may be lost/.test(err.message)) broken = true;
      },
    );
    return p;
  };
  const reopen = async (): Promise<void> => {
    await Promise.all(running.splice(0));
    await ov.close();
    storage = new FaultyStorage();
    ov = await CowOverlay.open(base, join(dir, 'ov'), { storage });
    broken = false;
    reopens += 1;
    const got = await ov.read(0, size);
    for (let g = 0; g < granules; g++) {
      const off = g * G;
      const len = Math.min(G, size - off);
      const part = got.subarray(off, off + len);
      const flushed = durable.get(g);
      if (flushed) {
        // As last written (the page cache survives a process crash) or at least as the last successful flush saw it.
        const ok = sameKnown(part, off, current) || sameKnown(part, 0, flushed.bytes, flushed.unknown, 0);
        assert.ok(ok, `seed ${seed}: granule ${g} lost what a successful flush made durable, after reopen ${reopens}`);
      } else {
        const asBase = part.equals(baseBytes.subarray(off, off + len));
        assert.ok(asBase || sameKnown(part, off, current), `seed ${seed}: granule ${g} is neither its last write nor the base after reopen ${reopens}`);
      }
      // From here the model follows what the overlay holds.
      part.copy(current, off);
      unknown.fill(0, off, off + len);
    }
  };

  const OPS = 400;
  for (let i = 0; i < OPS; i++) {
    const r = rand();
    if (r < 0.1 && !broken) {
      // Arm one fault on the next matching call.
      const choices: [StorageOp[], RegExp, Fault][] = [
        [['pwrite'], /overlay\.data$/, 'EIO'],
        [['pwrite'], /overlay\.data$/, 'ENOSPC'],
        [['pwrite'], /overlay\.data$/, 'short-write'],
        [['pwrite'], /overlay\.map$/, 'short-write'],
        [['pwrite'], /overlay\.map$/, 'ENOSPC'],
        [['datasync'], /overlay\.map$/, 'fsync-lost'],
        [['datasync'], /overlay\.data$/, 'fsync-lost'],
        [['pread'], /overlay\.data$/, 'EIO'],
      ];
      const [ops, path, fault] = choices[Math.floor(rand() * choices.length)]!;
      storage.heal().fail({ ops, path, nth: 0, fault });
      faults += 1;
    } else if (r < 0.55) {
      const kind = rand();
      const len = kind < 0.4 ? 1 + Math.floor(rand() * 8 * KiB) : kind < 0.7 ? G : 1 + Math.floor(rand() * 3 * G);
      const off = kind >= 0.4 && kind < 0.7 ? Math.floor(rand() * (granules - 1)) * G : Math.floor(rand() * (size - len));
      const d = randomBytes(rand, len);
      try {
        await ov.write(off, d);
        d.copy(current, off);
        unknown.fill(0, off, off + len);
        for (const g of granulesOf(off, len)) touched.add(g);
      } catch (err) {
        assert.ok(isLifeboatError(err), `seed ${seed} op ${i}: a failed write is a coded error: ${String(err)}`);
        if (!broken) unknown.fill(1, off, off + len);
        for (const g of granulesOf(off, len)) touched.add(g);
      }
    } else if (r < 0.75) {
      const len = 1 + Math.floor(rand() * 3 * G);
      const off = Math.floor(rand() * (size - len));
      try {
        const got = await ov.read(off, len);
        assert.ok(sameKnown(got, off, current), `seed ${seed} op ${i}: read ${off}+${len} differs from the model`);
      } catch (err) {
        assert.ok(isLifeboatError(err), `seed ${seed} op ${i}: a failed read is a coded error: ${String(err)}`);
      }
    } else if (r < 0.9) {
      const p = startFlush();
      if (rand() < 0.5) await p;
      else running.push(p);
    } else if (r < 0.95) {
      if (running.length > 0) await running.shift();
    } else {
      await reopen();
    }
  }
  await reopen();
  await ov.close();
  return { ops: OPS, faults, reopens };
}

test('overlay model: random reads, writes, flushes (awaited or not), faults and reopens never lose a flushed write', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    let faults = 0;
    let reopens = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const r = await runModel(seed, join(dir, String(seed)));
      faults += r.faults;
      reopens += r.reopens;
    }
    assert.ok(faults > 40 && reopens > 40, `the model exercised faults (${faults}) and reopens (${reopens})`);
  } finally {
    await cleanup();
  }
});
