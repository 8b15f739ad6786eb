/**
 * Backup benchmark: Lifeboat against restic and borg, same image, same machine,
 * one run. Prints throughput, ratios against restic, and stored bytes.
 *
 *   npm run bench                 (BENCH_IMAGE_MIB=2048 BENCH_DATA_MIB=1200 by default)
 *
 * Scenarios on a 2 GiB ext4 image holding ~1.2 GB of real files from /usr:
 *   full         first backup of the image
 *   blocks-5%    ~5% of the 1 MiB blocks rewritten with new (real, compressible) data
 *   guest-4k     200 scattered 4 KiB writes (how guests really write; granularity test)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildSampleImage } from './sample-image.js';
import { duBytes, referenceToolEnv } from './bench-util.js';
import { mutateBlocks, mutateScattered } from './image-changes.js';

const MiB = 1024 * 1024;
const work = resolve(process.env['BENCH_DIR'] ?? 'bench-work');
const imageMiB = Number(process.env['BENCH_IMAGE_MIB'] ?? 2048);
const dataMiB = Number(process.env['BENCH_DATA_MIB'] ?? 1200);
const bin = resolve('bin/lifeboat.js');
const env = referenceToolEnv;

function timed(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString()}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

interface Tool {
  readonly name: string;
  init(): void;
  backup(): number; // seconds
  repo: string;
}

function tools(image: string): Tool[] {
  const lb = join(work, 'lifeboat');
  const rs = join(work, 'restic');
  const bg = join(work, 'borg');
  let borgN = 0;
  return [
    {
      name: 'lifeboat',
      repo: lb,
      init() {
        execFileSync(process.execPath, [bin, 'repo', 'init', lb]);
        execFileSync(process.execPath, [bin, 'job', 'create', 'vm', '--repo', lb, '--disk', image, '--retain-points', '100']);
      },
      backup: () => timed(process.execPath, [bin, 'backup', 'vm', '--repo', lb]),
    },
    {
      name: 'restic',
      repo: rs,
      init: () => void timed('restic', ['init', '--repo', rs]),
      backup: () => timed('restic', ['--repo', rs, 'backup', '--quiet', image]),
    },
    {
      name: 'borg',
      repo: bg,
      init: () => void timed('borg', ['init', '-e', 'none', bg]),
      backup: () => timed('borg', ['create', `${bg}::a${borgN++}`, image]),
    },
  ];
}

function main(): void {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const image = join(work, 'vm.img');
  process.stdout.write(`building ${imageMiB} MiB ext4 image with ~${dataMiB} MiB of files from /usr … `);
  const made = buildSampleImage(image, imageMiB * MiB, dataMiB * MiB);
  console.log(`${made.files} files, ${(made.bytes / 1e6).toFixed(0)} MB`);
  const ts = tools(image);
  for (const t of ts) t.init();

  const results: Record<string, Record<string, { seconds: number; stored: number }>> = {};
  const scenario = (name: string): void => {
    results[name] = {};
    for (const t of ts) {
      const before = duBytes(t.repo);
      const seconds = t.backup();
      results[name]![t.name] = { seconds, stored: duBytes(t.repo) - before };
    }
  };
  scenario('full');
  const m = mutateBlocks(image, 0.05, 7);
  scenario('blocks-5%');
  const scattered = mutateScattered(image, 200, 11);
  scenario('guest-4k');

  const imageBytes = statSync(image).size;
  console.log(
    `\nimage ${(imageBytes / MiB).toFixed(0)} MiB; 5% scenario changed ${(m.changedBytes / MiB).toFixed(0)} MiB (${(m.changedCompressed / MiB).toFixed(1)} MiB after zstd-1); guest-4k wrote ${scattered / 1024} KiB`,
  );
  console.log('scenario    tool       seconds  MB/s (image)  ×restic speed  stored MB  stored/changed');
  for (const [sc, byTool] of Object.entries(results)) {
    const ref = byTool['restic']!;
    for (const [tool, r] of Object.entries(byTool)) {
      const changed = sc === 'full' ? made.bytes : sc === 'blocks-5%' ? m.changedCompressed : scattered;
      console.log(
        `${sc.padEnd(12)}${tool.padEnd(11)}${r.seconds.toFixed(2).padStart(7)}  ${(imageBytes / 1e6 / r.seconds).toFixed(0).padStart(12)}  ${(ref.seconds / r.seconds).toFixed(2).padStart(13)}  ${(r.stored / 1e6).toFixed(1).padStart(9)}  ${(r.stored / changed).toFixed(2).padStart(14)}`,
      );
    }
  }
  console.log('stored/changed: full → stored ÷ file bytes; blocks-5% → stored ÷ changed data after zstd-1; guest-4k → stored ÷ bytes written');
  writeFileSync(join(work, 'results.json'), JSON.stringify({ imageBytes, fileBytes: made.bytes, changed: m, scattered, results }, null, 2));
}

main();
