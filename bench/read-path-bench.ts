/**
 * Read-path benchmark: what reading a restore point costs, from the stored
 * blocks to the bytes a restore or an instant-recovery client gets.
 *   - `restore`: the CLI restores a whole point to a raw file (sequential
 *     decode of every block in the worker pool);
 *   - `sequential`: 64 KiB reads one after another through the virtual disk
 *     (an NFS client copying the disk: read-ahead at work);
 *   - `random`: 4 KiB reads at random offsets, 32 in flight (a booting guest:
 *     one zstd frame decoded per read).
 * The point is one full of an ext4 image of BENCH_READ_GIB GiB (default 1)
 * holding OS files; it is built once in BENCH_DIR and reused.
 *
 *   npm run build && node dist/bench/read-path-bench.js
 */
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LifeboatService } from '../src/app/index.js';
import { BlockWorkerPool } from '../src/compress/block-pool.js';
import { systemClock } from '../src/core/clock.js';
import { prng } from '../src/testing/prng.js';
import { MiB, best, bin, lifeboat, seconds, work } from './bench-util.js';
import { buildSampleImage } from './sample-image.js';

const gib = Number(process.env['BENCH_READ_GIB'] ?? '1');
const dir = join(work, `read-path-${gib}g`);
const image = join(dir, 'vm.img');
const repo = join(dir, 'repo');
mkdirSync(dir, { recursive: true });
if (!existsSync(join(repo, 'lifeboat.json'))) {
  rmSync(repo, { recursive: true, force: true });
  buildSampleImage(image, gib * 1024 * MiB, gib * 600 * MiB);
  lifeboat(['repo', 'init', repo]);
  lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', image, '--retain-points', '3']);
  lifeboat(['backup', 'vm', '--repo', repo]);
}
const diskBytes = statSync(image).size;
const target = join(dir, 'restored.img');
const cli = best(() => {
  rmSync(target, { force: true });
  return seconds(process.execPath, [bin, 'restore', 'vm', '--repo', repo, '--point', 'latest', '--to', target, '--format', 'raw']);
}, 3);
console.log(`restore ${gib} GiB point (CLI): ${cli.toFixed(2)} s (${(diskBytes / MiB / cli).toFixed(0)} MiB/s)`);

const svc = new LifeboatService(systemClock);
/** Wall and CPU seconds (every thread of the process: the workers' decoding included) of `work`. */
const measure = async (work: () => Promise<number>): Promise<{ bytes: number; wall: number; cpu: number }> => {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const bytes = await work();
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { bytes, wall, cpu: (cpu.user + cpu.system) / 1e6 };
};
const runs: { wall: number; cpu: number }[] = [];
for (let i = 0; i < 3; i++) {
  rmSync(target, { force: true });
  runs.push(await measure(async () => (await svc.restore(repo, 'vm', { point: 'latest', to: target, format: 'raw', force: true }), diskBytes)));
}
rmSync(target, { force: true });
const restore = { wall: Math.min(...runs.map((r) => r.wall)), cpu: Math.min(...runs.map((r) => r.cpu)) };
console.log(`restore ${gib} GiB point (in process, best of 3): ${restore.wall.toFixed(2)} s wall, ${restore.cpu.toFixed(2)} s CPU`);

const timeReads = async (
  reads: (disk: { read(o: number, l: number): Promise<Buffer>; size: number }) => Promise<number>,
): Promise<{ bytes: number; wall: number; cpu: number }> => {
  const pool = new BlockWorkerPool();
  const opened = await svc.openPointDisk(repo, 'vm', 'latest', undefined, pool);
  try {
    return await measure(() => reads(opened.disk));
  } finally {
    await opened.disk.close();
    await pool.close();
  }
};

const sequential = await timeReads(async (disk) => {
  const n = Math.min(disk.size, 512 * MiB);
  for (let at = 0; at < n; at += 64 * 1024) await disk.read(at, 64 * 1024);
  return n;
});
console.log(
  `sequential 64 KiB reads (first 512 MiB): ${(sequential.bytes / MiB / sequential.wall).toFixed(0)} MiB/s, ${((sequential.cpu / sequential.bytes) * 1024 * MiB).toFixed(2)} CPU s/GiB`,
);

const count = 20_000;
const random = await timeReads(async (disk) => {
  const rand = prng(5);
  let next = 0;
  const reader = async (): Promise<void> => {
    while (next < count) {
      next += 1;
      await disk.read(Math.floor(rand() * (disk.size / 4096)) * 4096, 4096);
    }
  };
  await Promise.all(Array.from({ length: 32 }, reader));
  return count * 4096;
});
console.log(`random 4 KiB reads, 32 in flight: ${(count / random.wall).toFixed(0)} reads/s, ${((random.cpu / count) * 1e6).toFixed(0)} CPU µs/read`);
