/**
 * Changed-block tracking benchmark, one run on one machine: a ≥ 1 GiB qcow2
 * image of real files, ~5% of its 1 MiB blocks then rewritten by qemu-io (so
 * QEMU's dirty bitmaps see the writes), and the incremental backup taken
 * four ways: Lifeboat with CBT (reads only the dirty blocks), Lifeboat
 * comparing hashes (reads the whole image), restic and borg (which read the
 * whole changed file). Source bytes read, seconds and stored bytes.
 * Target: the CBT incremental takes ≤ 10% of a full's time.
 *
 * The disk is 4 GiB by default, about 70% real files (BENCH_CBT_GIB=1 for the
 * 1 GiB image of bench:methods). A run has a fixed part (the CLI starting,
 * QEMU's storage daemon, commit, retention) of about 0.3 s that a full pays
 * too; on a small disk it weighs more against the ~5% of data that changed.
 *
 *   npm run bench:cbt                 (BENCH_CBT_GIB=1 npm run bench:cbt)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, bin, duBytes, referenceToolEnv, work } from './bench-util.js';
import { buildSampleImage } from './sample-image.js';
import { rewriteFivePercent } from './cbt-changes.js';

const env = referenceToolEnv;

function run(cmd: string, args: string[]): { secs: number; out: string } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString()}`);
  return { secs: Number(process.hrtime.bigint() - t0) / 1e9, out: r.stdout.toString() };
}

interface Row {
  tool: string;
  fullSecs: number;
  incSecs: number;
  /** Lifeboat only: the run inside the process (what a scheduled run in `serve` costs), without the CLI's start-up. */
  engine?: { full: number; inc: number };
  incRead: number;
  incStored: number;
}

function main(): void {
  mkdirSync(work, { recursive: true });
  const gib = Number(process.env['BENCH_CBT_GIB'] ?? 4);
  if (!Number.isInteger(gib) || gib < 1) throw new Error(`BENCH_CBT_GIB must be a whole number of GiB ≥ 1, not ${process.env['BENCH_CBT_GIB']}`);
  const raw = join(work, gib === 1 ? 'methods.img' : `cbt-${gib}g.img`);
  if (!existsSync(raw)) buildSampleImage(raw, gib * 1024 * MiB, gib * 700 * MiB, ['/usr/lib', '/usr/share', '/usr/bin', '/usr/libexec', '/usr/sbin', '/opt']);
  const img = join(work, 'cbt.qcow2');
  rmSync(img, { force: true });
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, img]);
  const size = statSync(raw).size;
  const repo = join(work, 'cbt-repo');
  const rs = join(work, 'cbt-restic');
  const bg = join(work, 'cbt-borg');
  for (const d of [repo, rs, bg]) rmSync(d, { recursive: true, force: true });
  run(process.execPath, [bin, 'repo', 'init', repo]);
  run(process.execPath, [bin, 'job', 'create', 'cbt', '--repo', repo, '--disk', img, '--cbt']);
  run(process.execPath, [bin, 'job', 'create', 'hash', '--repo', repo, '--disk', img]);
  run('restic', ['init', '--repo', rs]);
  run('borg', ['init', '-e', 'none', bg]);
  const lb = (job: string): { secs: number; engine: number; read: number; stored: number } => {
    const r = run(process.execPath, [bin, 'backup', job, '--repo', repo, '--json']);
    const j = JSON.parse(r.out) as { bytesRead: number; bytesStored: number; seconds: number };
    return { secs: r.secs, engine: j.seconds, read: j.bytesRead, stored: j.bytesStored };
  };
  const fulls = {
    cbt: lb('cbt'),
    hash: lb('hash'),
    restic: run('restic', ['--repo', rs, 'backup', '--quiet', img]).secs,
    borg: run('borg', ['create', `${bg}::a0`, img]).secs,
  };
  const resticBefore = duBytes(rs);
  const borgBefore = duBytes(bg);

  // ~5% of the 1 MiB blocks rewritten through QEMU, with bytes of real files (as compressible as the image's own).
  const { blocks } = rewriteFivePercent(raw, img, join(work, 'cbt-src'));

  const rows: Row[] = [];
  const cbt = lb('cbt');
  rows.push({
    tool: 'lifeboat --cbt',
    fullSecs: fulls.cbt.secs,
    incSecs: cbt.secs,
    engine: { full: fulls.cbt.engine, inc: cbt.engine },
    incRead: cbt.read,
    incStored: cbt.stored,
  });
  const hash = lb('hash');
  rows.push({
    tool: 'lifeboat (hashes)',
    fullSecs: fulls.hash.secs,
    incSecs: hash.secs,
    engine: { full: fulls.hash.engine, inc: hash.engine },
    incRead: hash.read,
    incStored: hash.stored,
  });
  const fileSize = statSync(img).size;
  const r = run('restic', ['--repo', rs, 'backup', '--quiet', img]);
  rows.push({ tool: 'restic', fullSecs: fulls.restic, incSecs: r.secs, incRead: fileSize, incStored: duBytes(rs) - resticBefore });
  const b = run('borg', ['create', `${bg}::a1`, img]);
  rows.push({ tool: 'borg', fullSecs: fulls.borg, incSecs: b.secs, incRead: fileSize, incStored: duBytes(bg) - borgBefore });

  console.log(
    `\n${size / MiB} MiB qcow2 (${(fileSize / 1e6).toFixed(0)} MB file), ${Math.ceil(blocks * 0.05)} of ${blocks} 1 MiB blocks rewritten through qemu-io\n`,
  );
  console.log('tool                 full s   incr s   incr/full   source read MB   stored MB');
  for (const x of rows) {
    console.log(
      `${x.tool.padEnd(19)}${x.fullSecs.toFixed(2).padStart(8)}${x.incSecs.toFixed(2).padStart(9)}${`${((x.incSecs / x.fullSecs) * 100).toFixed(1)}%`.padStart(12)}${(x.incRead / 1e6).toFixed(0).padStart(17)}${(x.incStored / 1e6).toFixed(1).padStart(12)}`,
    );
  }
  console.log('\nWithout the CLI start-up (the run inside the process, as `serve` would schedule it):');
  for (const x of rows)
    if (x.engine)
      console.log(
        `${x.tool.padEnd(19)}${x.engine.full.toFixed(2).padStart(8)}${x.engine.inc.toFixed(2).padStart(9)}${`${((x.engine.inc / x.engine.full) * 100).toFixed(1)}%`.padStart(12)}`,
      );
  console.log('\nrestic and borg read the whole changed file (its size is shown). Target: lifeboat --cbt incr/full ≤ 10%.');
}

main();
