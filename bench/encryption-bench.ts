/**
 * Encryption benchmark: a full backup and an instant-recovery read of the same
 * image into a plain and an encrypted repository (`repo init --encrypt`),
 * interleaved, best of BENCH_ENC_RUNS (default 3). The target (issue 18) is
 * encrypted ≥ 0.9× plain for both.
 *   - full: `lifeboat backup` of a new job (CLI, wall time, the password from
 *     LIFEBOAT_PASSWORD_FILE);
 *   - read: the whole disk in 64 KiB reads one after another through the
 *     virtual disk with the block pool (what NFS and NBD clients of an
 *     instant-recovery session get).
 * The image is an ext4 file system of BENCH_ENC_MIB MiB (default 1024) holding
 * OS files, built once in BENCH_DIR.
 *
 *   npm run bench:encryption
 */
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LifeboatService } from '../src/app/index.js';
import { BlockWorkerPool } from '../src/compress/block-pool.js';
import { systemClock } from '../src/core/clock.js';
import { MiB, bin, lifeboat, seconds, work } from './bench-util.js';
import { buildSampleImage } from './sample-image.js';

const mib = Number(process.env['BENCH_ENC_MIB'] ?? '1024');
const runs = Number(process.env['BENCH_ENC_RUNS'] ?? '3');
const dir = join(work, `encryption-${mib}m`);
const image = join(dir, 'vm.img');
mkdirSync(dir, { recursive: true });
if (!existsSync(image)) buildSampleImage(image, mib * MiB, Math.floor(mib * 0.6) * MiB);
const pw = join(dir, 'password');
writeFileSync(pw, 'bench password\n');
process.env['LIFEBOAT_PASSWORD_FILE'] = pw;
const size = statSync(image).size;
const svc = new LifeboatService(systemClock);

async function readAll(repo: string): Promise<number> {
  const pool = new BlockWorkerPool();
  const opened = await svc.openPointDisk(repo, 'vm', 'latest', undefined, pool);
  try {
    const t0 = process.hrtime.bigint();
    for (let at = 0; at < opened.disk.size; at += 64 * 1024) await opened.disk.read(at, Math.min(64 * 1024, opened.disk.size - at));
    return Number(process.hrtime.bigint() - t0) / 1e9;
  } finally {
    await opened.disk.close();
    await pool.close();
  }
}

const kinds = ['plain', 'encrypted'] as const;
const full: Record<(typeof kinds)[number], number[]> = { plain: [], encrypted: [] };
const read: Record<(typeof kinds)[number], number[]> = { plain: [], encrypted: [] };
for (let i = 0; i < runs; i++) {
  for (const kind of kinds) {
    const repo = join(dir, `repo-${kind}`);
    rmSync(repo, { recursive: true, force: true });
    lifeboat(['repo', 'init', repo, ...(kind === 'encrypted' ? ['--encrypt'] : [])]);
    lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', image, '--retain-points', '3']);
    full[kind].push(seconds(process.execPath, [bin, 'backup', 'vm', '--repo', repo]));
    read[kind].push(await readAll(repo));
  }
}
const best = (xs: number[]): number => Math.min(...xs);
const rate = (s: number): string => `${(size / MiB / s).toFixed(0)} MiB/s`;
for (const kind of kinds)
  console.log(
    `${kind.padEnd(9)} full backup ${best(full[kind]).toFixed(2)} s (${rate(best(full[kind]))}), read ${best(read[kind]).toFixed(2)} s (${rate(best(read[kind]))})`,
  );
console.log(
  `encrypted / plain throughput (best of ${runs}, ${mib} MiB image): full ${(best(full.plain) / best(full.encrypted)).toFixed(2)}x, read ${(best(read.plain) / best(read.encrypted)).toFixed(2)}x`,
);
