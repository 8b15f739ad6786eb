// An immutable (hardened) repository on a real ext4 file system (a loop-mounted image; root, as CI):
// backup files get the immutable attribute, rm/truncate/overwrite fail with EPERM before their date,
// retention keeps them until it (and says so) and deletes them after it, also after a crash between
// unlocking and deleting; methods and commands that rewrite committed files are refused; a file
// system or a process that cannot set the attribute gets no repository and no backup.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, readdir, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { fixedClock } from '../src/core/clock.js';
import { runBackup, type BackupProgress } from '../src/methods/backup-run.js';
import { writeCheckedJson } from '../src/repository/checked-json.js';
import { Repository } from '../src/repository/repository.js';
import { BIN, MiB, cli, randomBytes, rng, tempDir, writeAt } from './helpers.js';

const CHILD = fileURLToPath(new URL('./immutable-crash-child.js', import.meta.url));
const DAY = 86_400_000;
const T0 = Date.parse('2026-01-05T10:00:00Z');
const at = (ms: number): Record<string, string> => ({ LIFEBOAT_NOW: new Date(ms).toISOString() });

function sh(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code ?? 1) : 1;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

async function must(cmd: string, args: readonly string[]): Promise<string> {
  const r = await sh(cmd, args);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.out}`);
  return r.out;
}

/** A 256 MiB ext4 image mounted through a loop device at <dir>/mnt for `fn`; unmounted and detached in every outcome. */
async function withExt4<T>(fn: (mnt: string, dir: string) => Promise<T>): Promise<T> {
  const { dir, cleanup } = await tempDir('lifeboat-immutable-');
  const img = join(dir, 'fs.img');
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  try {
    await must('truncate', ['-s', '256M', img]);
    await must('mkfs.ext4', ['-q', img]);
    await must('mount', ['-o', 'loop', img, mnt]);
    try {
      return await fn(mnt, dir);
    } finally {
      // Whatever the test left immutable must go, or the image could not be removed.
      await sh('chattr', ['-R', '-i', mnt]);
      await sh('umount', [mnt]);
      const loops = (await sh('losetup', ['-j', img])).out.split('\n').map((l) => l.split(':')[0]!);
      for (const l of loops.filter((x) => x.startsWith('/dev/'))) await sh('losetup', ['-d', l]);
    }
  } finally {
    await cleanup();
  }
}

async function immutable(path: string): Promise<boolean> {
  const r = await sh('lsattr', ['-d', path]);
  assert.equal(r.code, 0, r.out);
  return r.out.split(' ')[0]!.includes('i');
}

async function backupFiles(jobDir: string): Promise<string[]> {
  return (await readdir(jobDir)).filter((n) => /\.(vbk|vib|vrb)$/.test(n)).sort();
}

async function expectEperm(what: string, f: () => Promise<unknown>): Promise<void> {
  await assert.rejects(f, (err: NodeJS.ErrnoException) => err.code === 'EPERM', `${what} must fail with EPERM`);
}

function refused(r: { code: number | null; stderr: string }, code: string, exit: number): void {
  assert.equal(r.code, exit, r.stderr);
  assert.match(r.stderr, new RegExp(`\\[${code}\\]`));
}

test('immutable repository on ext4: EPERM before the date, retention after it, rewriting methods refused, restore bit-exact', async () => {
  await withExt4(async (mnt, dir) => {
    const repo = join(mnt, 'repo');
    const disk = join(dir, 'vm.img');
    const jobDir = join(repo, 'jobs', 'vm');
    const rand = rng(18);
    const content = randomBytes(rand, 6 * MiB);
    await writeFile(disk, content);
    const contents = new Map<string, Buffer>();

    refused(await cli(['repo', 'init', join(mnt, 'zero'), '--immutable-days', '0']), 'LFB_ERR_INVALID_ARGUMENT', 2);
    assert.equal((await cli(['repo', 'init', repo, '--immutable-days', '2'], at(T0))).code, 0);
    const info = await cli(['repo', 'info', '--repo', repo, '--json']);
    assert.equal((JSON.parse(info.stdout) as { immutableDays?: number }).immutableDays, 2);

    // Methods that rewrite committed files are refused, at create and at set.
    refused(await cli(['job', 'create', 'ff', '--repo', repo, '--disk', disk, '--method', 'forever']), 'LFB_ERR_IMMUTABLE', 5);
    refused(await cli(['job', 'create', 'dflt', '--repo', repo, '--disk', disk]), 'LFB_ERR_IMMUTABLE', 5); // no full day: forever forward
    refused(await cli(['job', 'create', 'rev', '--repo', repo, '--disk', disk, '--method', 'reverse']), 'LFB_ERR_IMMUTABLE', 5);
    const create = await cli(
      ['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', 'forward', '--active-full', 'mon,tue,wed,thu,fri,sat,sun', '--retain-points', '1'],
      at(T0),
    );
    assert.equal(create.code, 0, create.stderr);
    refused(await cli(['job', 'set', 'vm', '--repo', repo, '--method', 'reverse']), 'LFB_ERR_IMMUTABLE', 5);
    refused(await cli(['job', 'set', 'vm', '--repo', repo, '--synthetic-full', 'sat', '--transform-to-rollbacks']), 'LFB_ERR_IMMUTABLE', 5);

    const backup = async (ms: number): Promise<{ pointId: string; retention: { skipped?: string }[] }> => {
      const r = await cli(['backup', 'vm', '--repo', repo, '--json'], at(ms));
      assert.equal(r.code, 0, r.stderr);
      const run = JSON.parse(r.stdout) as { pointId: string; retention: { skipped?: string }[] };
      contents.set(run.pointId, Buffer.from(await readFile(disk)));
      return run;
    };
    // Day 0: a full and an increment (chain A).
    const a = await backup(T0);
    await writeAt(disk, randomBytes(rand, MiB), 2 * MiB);
    const a1 = await backup(T0 + 3600_000);
    const chainA = await backupFiles(jobDir);
    assert.equal(chainA.length, 2);
    for (const f of chainA) assert.equal(await immutable(join(jobDir, f)), true, `${f} is immutable`);
    for (const n of ['job.json', 'vm.vbm']) assert.equal(await immutable(join(jobDir, n)), false, `${n} stays writable`);

    // As root: no rm, truncate or overwrite of a backup file.
    const vbk = join(jobDir, chainA[0]!);
    const before = await readFile(vbk);
    const rm = await sh('rm', ['-f', vbk]);
    assert.notEqual(rm.code, 0);
    assert.match(rm.out, /Operation not permitted/);
    await expectEperm('unlink', () => unlink(vbk));
    await expectEperm('truncate', () => truncate(vbk, 0));
    await expectEperm('overwrite', () => open(vbk, 'r+'));
    await expectEperm('replace', () => writeFile(vbk, 'x'));
    assert.deepEqual(await readFile(vbk), before);

    refused(await cli(['compact', 'vm', '--repo', repo]), 'LFB_ERR_IMMUTABLE', 5);

    // Day 1: an active full (chain B). Retention (newest point only) would delete chain A: it is immutable until A1's date.
    await writeAt(disk, randomBytes(rand, MiB), 4 * MiB);
    const b = await backup(T0 + DAY);
    const untilA = new Date(T0 + 3600_000 + 2 * DAY).toISOString();
    assert.match(b.retention[0]?.skipped ?? '', new RegExp(`immutable until ${untilA}`));
    assert.deepEqual((await backupFiles(jobDir)).slice(0, 2), chainA);
    const plan = await cli(['retention', 'plan', 'vm', '--repo', repo], at(T0 + DAY));
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, new RegExp(`keep ${a.pointId}: immutable until ${untilA}`));
    assert.match(plan.stdout, new RegExp(`keep ${a1.pointId}: immutable until ${untilA}`));
    assert.doesNotMatch(plan.stdout, /^delete/m);
    refused(await cli(['job', 'delete', 'vm', '--repo', repo, '--with-points'], at(T0 + DAY)), 'LFB_ERR_IMMUTABLE', 5);
    assert.equal((await backupFiles(jobDir)).length, 3);

    // immutable.json and lifeboat.json are the only records of the dates: one back-dated or deleted by hand unlocks
    // nothing early (each file's name, which its attribute keeps, dates it), and lifeboat.json cannot be edited.
    await expectEperm('overwrite of lifeboat.json', () => open(join(repo, 'lifeboat.json'), 'r+').then((f) => f.close()));
    const recordPath = join(jobDir, 'immutable.json');
    const recorded = await readFile(recordPath);
    const files = (JSON.parse(recorded.toString('utf8')) as { body: { files: Record<string, string> } }).body.files;
    const backdated = Object.fromEntries(Object.keys(files).map((n) => [n, '2000-01-01T00:00:00.000Z']));
    await writeCheckedJson(recordPath, { format: 'lifeboat-immutable', version: 1, files: backdated });
    const tamperedPlan = await cli(['retention', 'plan', 'vm', '--repo', repo], at(T0 + DAY));
    assert.equal(tamperedPlan.code, 0, tamperedPlan.stderr);
    assert.match(tamperedPlan.stdout, new RegExp(`keep ${a.pointId}: immutable until ${untilA}`));
    refused(await cli(['job', 'delete', 'vm', '--repo', repo, '--with-points'], at(T0 + DAY)), 'LFB_ERR_IMMUTABLE', 5);
    await unlink(recordPath);
    refused(await cli(['job', 'delete', 'vm', '--repo', repo, '--with-points'], at(T0 + DAY)), 'LFB_ERR_IMMUTABLE', 5);
    const kept = await backupFiles(jobDir);
    assert.equal(kept.length, 3);
    for (const f of kept) assert.equal(await immutable(join(jobDir, f)), true, `${f} is still immutable`);
    await writeFile(recordPath, recorded);

    // Day 2, after A's date: a retention killed between unlocking a file and deleting it…
    const t2 = T0 + 2 * DAY + 2 * 3600_000;
    let left: string | undefined;
    for (let k = 1; k <= 30 && left === undefined; k++) {
      const r = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
        const p = spawn(process.execPath, [CHILD, repo, 'vm', new Date(t2).toISOString()], {
          env: { ...process.env, LIFEBOAT_CRASH_AT: String(k) },
          stdio: 'ignore',
        });
        p.on('close', (code, signal) => resolve({ code, signal }));
      });
      assert.equal(r.signal, 'SIGKILL', `crash point ${k} was never reached without an unlocked file left`);
      const present = (await backupFiles(jobDir)).filter((f) => chainA.includes(f));
      for (const f of present) if (!(await immutable(join(jobDir, f)))) left = f;
    }
    assert.ok(left !== undefined, 'a kill left an unlocked file of chain A');
    // …leaves a file the next run's retention deletes.
    await writeAt(disk, randomBytes(rand, MiB), 1 * MiB);
    const c = await backup(t2);
    const after = await backupFiles(jobDir);
    for (const f of chainA) assert.ok(!after.includes(f), `${f} deleted once its date had come`);
    assert.equal(after.length, 2);
    const record = JSON.parse(await readFile(join(jobDir, 'immutable.json'), 'utf8')) as { body: { files: Record<string, string> } };
    assert.deepEqual(Object.keys(record.body.files).sort(), after);
    // Chain B (sealed on day 1) waits for its own date.
    assert.match(c.retention.map((x) => x.skipped ?? '').join('\n'), new RegExp(`immutable until ${new Date(T0 + 3 * DAY).toISOString()}`));

    // Read-only commands work on immutable files: verify, and restore of every remaining point, bit-exact.
    const verify = await cli(['verify', 'vm', '--repo', repo, '--all']);
    assert.equal(verify.code, 0, verify.stderr);
    for (const id of [b.pointId, c.pointId]) {
      const to = join(dir, `${id}.raw`);
      const r = await cli(['restore', 'vm', '--repo', repo, '--point', id, '--to', to]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await readFile(to)).equals(contents.get(id)!), `point ${id} restores bit-exact`);
    }

    // Once every date has come, job delete --with-points unlocks and deletes.
    const r = await cli(['job', 'delete', 'vm', '--repo', repo, '--with-points'], at(T0 + 10 * DAY));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readdir(join(repo, 'jobs')), []);
  });
});

test('a file system or a process that cannot set the immutable attribute gets no immutable repository and no backup', async () => {
  const { dir, cleanup } = await tempDir('lifeboat-immutable-no-');
  try {
    // ramfs has no file attributes at all.
    const ram = join(dir, 'ram');
    await mkdir(ram);
    await must('mount', ['-t', 'ramfs', 'ramfs', ram]);
    try {
      refused(await cli(['repo', 'init', join(ram, 'repo'), '--immutable-days', '2']), 'LFB_ERR_IMMUTABLE_UNSUPPORTED', 1);
      assert.deepEqual(await readdir(ram), [], 'nothing left behind');
    } finally {
      await sh('umount', [ram]);
    }
  } finally {
    await cleanup();
  }
  await withExt4(async (mnt, dir2) => {
    // Root without CAP_LINUX_IMMUTABLE (as in a container that drops it): init refused, and a backup on a repository made before.
    const noCap = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
      new Promise((resolve) => {
        const p = spawn('setpriv', ['--bounding-set', '-linux_immutable', '--inh-caps', '-linux_immutable', process.execPath, BIN, ...args], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        p.on('close', (code) => resolve({ code, stderr }));
      });
    refused(await noCap(['repo', 'init', join(mnt, 'nocap'), '--immutable-days', '2']), 'LFB_ERR_IMMUTABLE_UNSUPPORTED', 1);
    const repo = join(mnt, 'repo');
    const disk = join(dir2, 'vm.img');
    await writeFile(disk, randomBytes(rng(7), 2 * MiB));
    assert.equal((await cli(['repo', 'init', repo, '--immutable-days', '1'])).code, 0);
    assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', 'forward', '--active-full', 'sun'])).code, 0);
    refused(await noCap(['backup', 'vm', '--repo', repo]), 'LFB_ERR_IMMUTABLE_UNSUPPORTED', 1);
    assert.deepEqual(await backupFiles(join(repo, 'jobs', 'vm')), [], 'no mutable backup file written');
    // A job.json edited by hand to a method that rewrites files is refused by the run itself.
    const jobFile = join(repo, 'jobs', 'vm', 'job.json');
    const doc = JSON.parse(await readFile(jobFile, 'utf8')) as { sha256: string; body: Record<string, unknown> };
    const body = { ...doc.body, method: 'forever' };
    await writeFile(jobFile, JSON.stringify({ sha256: createHash('sha256').update(JSON.stringify(body)).digest('hex'), body }));
    refused(await cli(['backup', 'vm', '--repo', repo]), 'LFB_ERR_IMMUTABLE', 5);
    assert.deepEqual(await backupFiles(join(repo, 'jobs', 'vm')), []);
  });
});

test('a run stopped after its point was committed (stop, window close, SIGTERM) leaves that point sealed', async () => {
  await withExt4(async (mnt, dir) => {
    const repoDir = join(mnt, 'repo');
    const disk = join(dir, 'vm.img');
    await writeFile(disk, randomBytes(rng(9), 3 * MiB));
    assert.equal((await cli(['repo', 'init', repoDir, '--immutable-days', '2'])).code, 0);
    const create = await cli([
      'job',
      'create',
      'vm',
      '--repo',
      repoDir,
      '--disk',
      disk,
      '--method',
      'forward',
      '--active-full',
      'sun',
      '--synthetic-full',
      'mon',
    ]);
    assert.equal(create.code, 0, create.stderr);
    const repo = await Repository.open(repoDir);
    const stopAtEnd = (): { signal: AbortSignal; onProgress: (p: BackupProgress) => void } => {
      const ac = new AbortController();
      // The last block read: the point is committed before the run next looks at the signal.
      return { signal: ac.signal, onProgress: (p) => p.bytesDone === p.bytesTotal && ac.abort('SIGTERM') };
    };
    // A full, then (on Monday) an increment stopped before its synthetic full.
    const full = await runBackup(repo, 'vm', { clock: fixedClock(new Date(T0 - DAY)), workers: 1, ...stopAtEnd() }).then(
      () => assert.fail('the run was stopped'),
      (err: { code?: string }) => err,
    );
    assert.equal(full.code, 'LFB_ERR_INTERRUPTED');
    await writeAt(disk, randomBytes(rng(10), MiB), MiB);
    const inc = await runBackup(repo, 'vm', { clock: fixedClock(new Date(T0)), workers: 1, ...stopAtEnd() }).then(
      () => assert.fail('the run was stopped'),
      (err: { code?: string }) => err,
    );
    assert.equal(inc.code, 'LFB_ERR_INTERRUPTED');
    const files = await backupFiles(join(repoDir, 'jobs', 'vm'));
    assert.deepEqual(
      files.map((f) => f.slice(-4)),
      ['.vbk', '.vib'],
    );
    for (const f of files) assert.equal(await immutable(join(repoDir, 'jobs', 'vm', f)), true, `${f} is immutable after a stopped run`);
  });
});

test("a long run's files are immutable for the days from when they are sealed, not from when the run started", async () => {
  await withExt4(async (mnt, dir) => {
    const repoDir = join(mnt, 'repo');
    const disk = join(dir, 'vm.img');
    await writeFile(disk, randomBytes(rng(11), 2 * MiB));
    assert.equal((await cli(['repo', 'init', repoDir, '--immutable-days', '2'])).code, 0);
    assert.equal((await cli(['job', 'create', 'vm', '--repo', repoDir, '--disk', disk, '--method', 'forward', '--active-full', 'sun'])).code, 0);
    // The clock moves 5 hours on while the data is read (a long full).
    let t = T0;
    const r = await runBackup(await Repository.open(repoDir), 'vm', {
      clock: { now: () => new Date(t) },
      workers: 1,
      onProgress: (p) => {
        if (p.bytesDone === p.bytesTotal) t = T0 + 5 * 3600_000;
      },
    });
    const record = JSON.parse(await readFile(join(repoDir, 'jobs', 'vm', 'immutable.json'), 'utf8')) as { body: { files: Record<string, string> } };
    assert.equal(record.body.files[r.file], new Date(T0 + 5 * 3600_000 + 2 * DAY).toISOString());
  });
});
