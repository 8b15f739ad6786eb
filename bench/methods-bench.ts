/**
 * Backup methods benchmark: for each method, ten runs on a 1 GiB image of
 * real files with ~5% of its blocks rewritten before each run: time per
 * run, repository bytes read and written per byte of changed data stored
 * (from the process's own read/write system-call counters, minus the
 * source it read), and the repository's size after ten runs. Veeam's I/O
 * per changed block: forward 1 write; merge and synthetic full 1 read +
 * 1 write; reverse 1 read + 2 writes; transform 2 reads + 2 writes (the
 * transform's own cost is the difference between the last two rows).
 *
 *   npm run bench:methods
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, lifeboat, work } from './bench-util.js';
import { prng } from '../src/testing/prng.js';
import { buildSampleImage } from './sample-image.js';

interface RunResult {
  bytesRead: number;
  bytesStored: number;
  seconds: number;
  io: { readBytes: number; writtenBytes: number };
}

function dirBytes(dir: string): number {
  return readdirSync(dir)
    .filter((n) => /\.(vbk|vib|vrb)$/.test(n))
    .reduce((a, n) => a + statSync(join(dir, n)).size, 0);
}

/** Rewrites ~5% of the image's 1 MiB blocks with fresh, compressible bytes. */
function mutate(image: string, size: number, rand: () => number): void {
  const fd = openSync(image, 'r+');
  const blocks = Math.floor(size / MiB);
  const buf = Buffer.alloc(MiB);
  for (let k = 0; k < Math.ceil(blocks * 0.05); k++) {
    for (let i = 0; i < MiB; i += 4) buf.writeUInt32LE(rand() < 0.5 ? 0 : Math.floor(rand() * 2 ** 32) >>> 0, i);
    writeSync(fd, buf, 0, MiB, Math.floor(rand() * blocks) * MiB);
  }
  closeSync(fd);
}

const METHODS = [
  { name: 'forward', args: ['--method', 'forward', '--retain-points', '20'] },
  { name: 'forever (merge)', args: ['--method', 'forever', '--retain-points', '5'] },
  { name: 'reverse', args: ['--method', 'reverse', '--retain-points', '20'] },
  { name: 'forward + synthetic full', args: ['--method', 'forward', '--retain-points', '20', '--synthetic-full', 'mon,tue,wed,thu,fri,sat,sun'] },
  {
    name: '  … + transform',
    args: ['--method', 'forward', '--retain-points', '20', '--synthetic-full', 'mon,tue,wed,thu,fri,sat,sun', '--transform-to-rollbacks'],
  },
];

function main(): void {
  mkdirSync(work, { recursive: true });
  const pristine = join(work, 'methods.img');
  if (!existsSync(pristine)) buildSampleImage(pristine, 1024 * MiB, 700 * MiB);
  const size = statSync(pristine).size;
  console.log(`${size / MiB} MiB image, ~5% of blocks rewritten before each of runs 2–10\n`);
  console.log('method                      s/run   repo read/changed   repo written/changed   size after 10 runs');
  const rows: { reads: number; writes: number }[] = [];
  for (const m of METHODS) {
    const image = join(work, 'methods-run.img');
    // Not sparse: every byte of the source is read, so the run's own reads minus its source are the repository's.
    execFileSync('cp', ['--sparse=never', pristine, image]);
    const repo = join(work, 'methods-repo');
    rmSync(repo, { recursive: true, force: true });
    lifeboat(['repo', 'init', repo]);
    lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', image, ...m.args]);
    const rand = prng(9);
    let secs = 0;
    let reads = 0;
    let writes = 0;
    let changed = 0;
    for (let run = 0; run < 10; run++) {
      if (run > 0) mutate(image, size, rand);
      const now = new Date(Date.UTC(2026, 0, 5 + run, 21)).toISOString();
      const r = JSON.parse(lifeboat(['backup', 'vm', '--repo', repo, '--json'], now)) as RunResult;
      if (run === 0) continue;
      secs += r.seconds;
      // What the run read besides its source, and everything it wrote, per byte of new data stored.
      reads += Math.max(0, r.io.readBytes - r.bytesRead);
      writes += r.io.writtenBytes;
      changed += r.bytesStored;
    }
    rows.push({ reads: reads / changed, writes: writes / changed });
    const line = `${m.name.padEnd(26)}${(secs / 9).toFixed(2).padStart(6)}${(reads / changed).toFixed(2).padStart(20)}${(writes / changed).toFixed(2).padStart(23)}${`${(dirBytes(join(repo, 'jobs', 'vm')) / 1e6).toFixed(0)} MB`.padStart(21)}`;
    console.log(line);
  }
  const [syn, tr] = rows.slice(-2) as [{ reads: number; writes: number }, { reads: number; writes: number }];
  console.log(
    `${'transform alone'.padEnd(26)}${''.padStart(6)}${(tr.reads - syn.reads).toFixed(2).padStart(20)}${(tr.writes - syn.writes).toFixed(2).padStart(23)}`,
  );
  console.log(
    '\nReads and writes are per byte of changed data the run stored (compressed); a synthetic run copies the whole point, so its ratio is far above 1 by nature: compare its s/run.',
  );
}

main();
