// The capacity tier with a folder as its extent (the same code as on S3: test/capacity-tier-s3 runs it on radosgw),
// through the real `lifeboat` command: sealed chains moved and restored bit-exact from the extent, copy mode with a
// forever-forward full that merges, a damaged copy made anew before its local file goes, retention removing both
// copies, a tier run killed with -9, and the refusals with their codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isLifeboatError } from '../src/core/errors.js';
import { openLocation } from '../src/repository/location.js';
import { TieredStorage } from '../src/repository/tiered-storage.js';
import type { RetentionPlan } from '../src/retention/index.js';
import { BIN, MiB, cli, randomBytes, rng, scatterWrites, tempDir, until, type CliResult, type ListedPoint } from './helpers.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const day = (d: number): string => new Date(Date.UTC(2026, 10, d, 10)).toISOString();

async function ok(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await cli(args, env);
  assert.equal(r.code, 0, `lifeboat ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function fails(r: CliResult, code: string): void {
  assert.notEqual(r.code, 0, `expected ${code}, got success: ${r.stdout}`);
  assert.match(r.stderr, new RegExp(`\\[${code}\\]`), r.stderr);
}

interface Scene {
  readonly dir: string;
  readonly repo: string;
  readonly cap: string;
  readonly disk: string;
  /** The disk's bytes at each point, by point id. */
  readonly at: Map<string, string>;
  /** Points retention removed. */
  readonly gone: Set<string>;
  backup(when: string, extra?: string[]): Promise<string>;
}

/** A repository, a 4 MiB disk and a job; backup() changes the disk, backs it up at `when` and remembers its bytes. */
async function withScene(label: string, seed: number, jobArgs: string[], fn: (s: Scene) => Promise<void>): Promise<void> {
  const t = await tempDir(`lifeboat-tier-${label}-`);
  try {
    const rand = rng(seed);
    const repo = join(t.dir, 'repo');
    const disk = join(t.dir, 'vm.img');
    const content = randomBytes(rand, 4 * MiB);
    await writeFile(disk, content);
    await ok(['repo', 'init', repo, '--block-size', '256K']);
    await ok(['job', 'create', 'vm', '--repo', repo, '--disk', disk, ...jobArgs]);
    const at = new Map<string, string>();
    const s: Scene = {
      dir: t.dir,
      repo,
      cap: join(t.dir, 'capacity'),
      disk,
      at,
      gone: new Set(),
      async backup(when, extra = []) {
        if (at.size > 0) await scatterWrites(disk, content, rand, 3, 100_000);
        const r = JSON.parse(await ok(['backup', 'vm', '--repo', repo, '--json', ...extra], { LIFEBOAT_NOW: when })) as { pointId: string };
        at.set(r.pointId, sha(await readFile(disk)));
        // What the backup's retention removed is gone for good; anything else must stay listed whatever the tier does.
        const listed = new Set((await points(repo)).map((p) => p.id));
        for (const id of at.keys()) if (!listed.has(id)) s.gone.add(id);
        return r.pointId;
      },
    };
    await fn(s);
  } finally {
    await t.cleanup();
  }
}

async function points(repo: string): Promise<ListedPoint[]> {
  return JSON.parse(await ok(['points', 'vm', '--repo', repo, '--json'])) as ListedPoint[];
}

/** Every point the scene made (and `repo` should hold: all of them but those retention took, unless `only` says) restores to the disk's bytes at that point. */
async function allRestore(s: Scene, repo = s.repo, only?: readonly string[]): Promise<void> {
  const listed = await points(repo);
  const wanted = only ?? [...s.at.keys()].filter((id) => !s.gone.has(id));
  assert.deepEqual(
    listed
      .filter((p) => p.available)
      .map((p) => p.id)
      .sort(),
    [...wanted].sort(),
    `the points ${repo} lists`,
  );
  for (const [id, want] of s.at) {
    if (!wanted.includes(id)) continue;
    const to = join(s.dir, `restore-${id}.img`);
    await ok(['restore', 'vm', '--repo', repo, '--point', id, '--to', to, '--force']);
    assert.equal(sha(await readFile(to)), want, `point ${id} from ${repo}`);
  }
}

interface Shown {
  jobs: { job: string; files: { file: string; place: 'local' | 'capacity' | 'both'; stale: boolean; points: string[] }[] }[];
}
const places = async (repo: string): Promise<Record<string, string>> =>
  Object.fromEntries(
    (JSON.parse(await ok(['tier', 'show', '--repo', repo, '--json'])) as Shown).jobs[0]!.files.map((f) => [f.file, f.place + (f.stale ? ' stale' : '')]),
  );

test('move: a sealed chain older than the setting goes to the capacity extent, checked; every point restores bit-exact, verify passes, the extent opens as a repository of its own', async () =>
  withScene('move', 11, ['--method', 'forward', '--retain-points', '10'], async (s) => {
    await s.backup(day(1));
    await s.backup(day(2));
    await s.backup(day(5), ['--active-full']);
    await s.backup(day(6));
    const before = (await points(s.repo)).map((p) => p.file);
    const sizes = await Promise.all(before.map(async (f) => (await stat(join(s.repo, 'jobs', 'vm', f))).size));
    const usage = async () =>
      JSON.parse(await ok(['repo', 'info', '--repo', s.repo, '--json'])) as {
        bytes: number;
        capacityBytes?: number;
        jobs: { bytes: number; capacityBytes?: number }[];
      };
    assert.equal((await usage()).capacityBytes, undefined, 'no tier, no capacity figure');
    await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--move-after-days', '3']);
    // Day 6: the old chain's newest point (day 2) is 4 days old; the chain of day 5 holds the newest point and stays.
    const run = JSON.parse(await ok(['tier', 'run', '--repo', s.repo, '--json'], { LIFEBOAT_NOW: day(6) })) as { copied: unknown[]; freed: { file: string }[] };
    assert.deepEqual(
      run.freed.map((f) => f.file),
      before.slice(0, 2),
    );
    const local = await readdir(join(s.repo, 'jobs', 'vm'));
    for (const f of before.slice(0, 2)) assert.ok(!local.includes(f), `${f} left the folder`);
    for (const f of before.slice(2)) assert.ok(local.includes(f), `${f} stays`);
    assert.deepEqual((await readdir(join(s.cap, 'jobs', 'vm'))).filter((n) => /\.(vbk|vib)$/.test(n)).sort(), before.slice(0, 2));
    assert.deepEqual(await places(s.repo), Object.fromEntries(before.map((f, i) => [f, i < 2 ? 'capacity' : 'local'])));
    // repo info counts the moved files on the capacity tier, the others in the folder.
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const used = await usage();
    assert.deepEqual(
      [used.bytes, used.capacityBytes, used.jobs[0]!.bytes, used.jobs[0]!.capacityBytes],
      [sum(sizes.slice(2)), sum(sizes.slice(0, 2)), sum(sizes.slice(2)), sum(sizes.slice(0, 2))],
    );
    assert.match(await ok(['repo', 'info', '--repo', s.repo]), / here, [\d.]+ [KMG]?i?B on the capacity tier;/);
    // points says where each point's file is.
    assert.deepEqual(
      (await points(s.repo)).map((p) => [p.file, p.available, (p as ListedPoint & { place?: string }).place]),
      before.map((f, i) => [f, true, i < 2 ? 'capacity' : 'local']),
    );
    assert.match(await ok(['points', 'vm', '--repo', s.repo]), new RegExp(`capacity +${before[0]!.replace('.', '\\.')}`));
    await allRestore(s);
    assert.match(await ok(['verify', 'vm', '--repo', s.repo, '--all']), /^OK: .* in 4 file\(s\), 4 point\(s\) checked/m);
    // Each moved file keeps a local stub (header, slots, root): with the extent gone, the job still scans, lists
    // every point and backs up; only reading a moved point's blocks needs the extent, and fails with a code.
    assert.deepEqual((await readdir(join(s.repo, 'jobs', 'vm', '.capacity'))).sort(), before.slice(0, 2));
    await rename(s.cap, `${s.cap}.away`);
    try {
      assert.deepEqual(
        (await points(s.repo)).map((p) => [p.file, p.available]),
        before.map((f) => [f, true]),
      );
      const cut = await cli(['restore', 'vm', '--repo', s.repo, '--point', [...s.at.keys()][0]!, '--to', join(s.dir, 'cut.img')]);
      fails(cut, 'LFB_ERR_TIER_MISMATCH');
      assert.equal(cut.code, 4);
      // verify reports the moved files' blocks as unreadable (and marks their points until a later check finds them whole).
      const checked = await cli(['verify', 'vm', '--repo', s.repo, '--all']);
      assert.equal(checked.code, 4, checked.stderr);
      assert.match(checked.stdout + checked.stderr, /capacity tier, which has no copy of it/);
    } finally {
      await rename(`${s.cap}.away`, s.cap);
    }
    assert.match(await ok(['verify', 'vm', '--repo', s.repo, '--all']), /^OK: .* in 4 file\(s\), 4 point\(s\) checked/m);
    // A run with nothing to do does nothing; a backup after the move goes on from the local chain.
    const again = JSON.parse(await ok(['tier', 'run', '--repo', s.repo, '--json'], { LIFEBOAT_NOW: day(6) })) as { copied: unknown[]; freed: unknown[] };
    assert.deepEqual([again.copied.length, again.freed.length], [0, 0]);
    await s.backup(day(7));
    await allRestore(s);
    // The extent alone is a repository (its lifeboat.json and job.json are kept there): the moved points restore from it.
    assert.deepEqual(
      (await points(s.cap)).map((p) => p.file),
      before.slice(0, 2),
    );
    await allRestore(s, s.cap, [...s.at.keys()].slice(0, 2));

    // A moved file is read, never written in place or renamed; retention and job delete take both copies.
    const { storage } = await openLocation(s.repo);
    assert.ok(storage instanceof TieredStorage);
    const moved = join(s.repo, 'jobs', 'vm', before[0]!);
    await assert.rejects(storage.open(moved, 'write'), (e: unknown) => isLifeboatError(e, 'LFB_ERR_ON_CAPACITY_TIER'));
    await assert.rejects(storage.rename(moved, `${moved}.x`), (e: unknown) => isLifeboatError(e, 'LFB_ERR_ON_CAPACITY_TIER'));
    fails(await cli(['tier', 'clear', '--repo', s.repo]), 'LFB_ERR_ON_CAPACITY_TIER');
    fails(await cli(['tier', 'set', '--repo', s.repo, '--capacity', join(s.dir, 'elsewhere'), '--move-after-days', '3']), 'LFB_ERR_ON_CAPACITY_TIER');
    await ok(['job', 'set', 'vm', '--repo', s.repo, '--retain-points', '2']);
    await s.backup(day(8), ['--active-full']);
    const left = (await points(s.repo)).map((p) => p.file);
    assert.ok(!left.includes(before[0]!), 'retention removed the moved chain');
    assert.deepEqual(
      (await readdir(join(s.cap, 'jobs', 'vm'))).filter((n) => /\.(vbk|vib)$/.test(n)),
      [],
      'and its copies on the capacity extent',
    );
    await ok(['job', 'delete', 'vm', '--repo', s.repo, '--with-points']);
    assert.deepEqual(await readdir(join(s.cap, 'jobs')), [], "job delete removed the job's folder on the extent");
    await ok(['tier', 'clear', '--repo', s.repo]);
  }));

test('copy mode: every backup file is copied and stays; a forever-forward full rewritten by a merge is copied again; a damaged copy is made anew before its local file goes', async () =>
  withScene('copy', 12, ['--method', 'forever', '--retain-points', '2'], async (s) => {
    await s.backup(day(1));
    await s.backup(day(2));
    await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--copy-new']);
    const first = JSON.parse(await ok(['tier', 'run', '--repo', s.repo, '--json'])) as { copied: { file: string }[]; freed: unknown[] };
    assert.equal(first.copied.length, 2);
    assert.equal(first.freed.length, 0);
    const [full, inc1] = (await points(s.repo)).map((p) => p.file);
    assert.deepEqual(await places(s.repo), { [full!]: 'both', [inc1!]: 'both' });
    // The third point merges the oldest increment into the full, in place: its copy is now of an older state.
    await s.backup(day(3));
    const now = await places(s.repo);
    assert.equal(now[full!], 'both stale');
    // Its points say it is here only: the copy on the tier holds an older state.
    const placeOf = async (file: string) => ((await points(s.repo)).find((p) => p.file === file) as ListedPoint & { place?: string }).place;
    assert.equal(await placeOf(full!), 'local');
    const second = JSON.parse(await ok(['tier', 'run', '--repo', s.repo, '--json'])) as { copied: { file: string }[] };
    assert.ok(
      second.copied.some((f) => f.file === full),
      'the merged full was copied again',
    );
    assert.equal(await placeOf(full!), 'both');
    assert.equal(sha(await readFile(join(s.cap, 'jobs', 'vm', full!))), sha(await readFile(join(s.repo, 'jobs', 'vm', full!))));
    await allRestore(s);

    // A copy damaged on the extent: the move checks it, finds it wrong, copies it anew, checks that, then frees.
    await ok(['job', 'set', 'vm', '--repo', s.repo, '--method', 'forward', '--retain-points', '10']);
    await s.backup(day(4), ['--active-full']);
    const capFull = join(s.cap, 'jobs', 'vm', full!);
    const damaged = await readFile(capFull);
    const mid = damaged.length >> 1;
    damaged[mid] = damaged[mid]! ^ 0xff;
    await writeFile(capFull, damaged);
    await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--move-after-days', '1']);
    const r = await cli(['tier', 'run', '--repo', s.repo, '--json'], { LIFEBOAT_NOW: day(9) });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`copy of vm/${full!} no longer matched its record; it is copied again`));
    const moved = JSON.parse(r.stdout) as { freed: { file: string }[] };
    assert.ok(moved.freed.some((f) => f.file === full));
    assert.equal((await places(s.repo))[full!], 'capacity');
    await allRestore(s);
  }));

test('a chain moved while its job was forward stays whole when the job turns forever-forward: backups go on, and retention deletes the chain once its newest point leaves', async () =>
  withScene('forever', 14, ['--method', 'forward', '--retain-points', '4'], async (s) => {
    await s.backup(day(1));
    await s.backup(day(2));
    await s.backup(day(5), ['--active-full']);
    await s.backup(day(6));
    await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--move-after-days', '3']);
    await ok(['tier', 'run', '--repo', s.repo, '--json'], { LIFEBOAT_NOW: day(6) });
    const [oldFull, oldInc] = (await points(s.repo)).map((p) => p.file);
    assert.equal((await places(s.repo))[oldFull!], 'capacity');
    await ok(['job', 'set', 'vm', '--repo', s.repo, '--method', 'forever']);
    // Day 7: the old chain's full falls out of the 4 points, its increment stays. A merge would write the moved full; the chain stays whole instead.
    await s.backup(day(7));
    const listed = await points(s.repo);
    assert.equal(listed.length, 5, 'the moved chain kept both its points');
    const plan = JSON.parse(await ok(['retention', 'plan', 'vm', '--repo', s.repo, '--json'], { LIFEBOAT_NOW: day(7) })) as RetentionPlan;
    assert.deepEqual(plan.actions, []);
    assert.match(plan.kept.find((k) => k.id === listed[0]!.id)!.reason, /^on the capacity tier, where a merge cannot write/);
    assert.equal((await places(s.repo))[oldFull!], 'capacity');
    await allRestore(s);
    // Day 8: its newest point leaves too; the chain is deleted, copies and all.
    await s.backup(day(8));
    const files = (await points(s.repo)).map((p) => p.file);
    assert.ok(!files.includes(oldFull!) && !files.includes(oldInc!), `the moved chain is gone: ${files.join(' ')}`);
    assert.deepEqual(
      (await readdir(join(s.cap, 'jobs', 'vm'))).filter((n) => n === oldFull || n === oldInc),
      [],
      'and its copies on the capacity extent',
    );
    await allRestore(s);
  }));

test('a tier run killed with -9 mid-copy leaves every point restorable; the next run finishes the move', async () =>
  withScene('kill', 13, ['--method', 'forward', '--retain-points', '10'], async (s) => {
    // A bigger full: the copy takes long enough to be cut.
    await writeFile(s.disk, randomBytes(rng(99), 96 * MiB));
    await s.backup(day(1));
    await s.backup(day(5), ['--active-full']);
    await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--move-after-days', '3']);
    for (let attempt = 0; attempt < 3; attempt++) {
      const p = spawn(process.execPath, [BIN, 'tier', 'run', '--repo', s.repo], { env: { ...process.env, LIFEBOAT_NOW: day(6) }, stdio: 'ignore' });
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      // Killed once the copy is under way (its temporary file on the extent), at a moment of the copy that varies.
      await until(
        'the copy to start',
        async () => ((await readdir(join(s.cap, 'jobs', 'vm')).catch(() => [])).some((n) => n.endsWith('.tier.tmp')) ? true : undefined),
        30_000,
        5,
      );
      await new Promise((r) => setTimeout(r, attempt * 40));
      p.kill('SIGKILL');
      await exited;
      await allRestore(s);
      assert.match(await ok(['verify', 'vm', '--repo', s.repo, '--all']), /^OK: /m);
    }
    const done = JSON.parse(await ok(['tier', 'run', '--repo', s.repo, '--json'], { LIFEBOAT_NOW: day(6) })) as { freed: unknown[] };
    assert.equal(done.freed.length, 1);
    assert.ok(!(await readdir(join(s.cap, 'jobs', 'vm'))).some((n) => n.endsWith('.tier.tmp')), 'the next run replaced the cut copy');
    await allRestore(s);
  }));

test('refusals: no tier, an extent inside the repository or holding another repository, a setting that does nothing, a bad schedule; clear once nothing lives only on the extent', async () =>
  withScene('refuse', 14, ['--method', 'forward', '--retain-points', '3'], async (s) => {
    await s.backup(day(1));
    assert.ok(!('place' in (await points(s.repo))[0]!), 'a repository without a tier says nothing of places');
    fails(await cli(['tier', 'run', '--repo', s.repo]), 'LFB_ERR_NO_CAPACITY_TIER');
    fails(await cli(['tier', 'show', '--repo', s.repo]), 'LFB_ERR_NO_CAPACITY_TIER');
    fails(await cli(['tier', 'set', '--repo', s.repo, '--capacity', join(s.repo, 'sub'), '--copy-new']), 'LFB_ERR_INVALID_ARGUMENT');
    fails(await cli(['tier', 'set', '--repo', s.repo, '--capacity', s.cap]), 'LFB_ERR_USAGE');
    fails(await cli(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--move-after-days', 'soon']), 'LFB_ERR_USAGE');
    fails(await cli(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--copy-new', '--schedule', 'often']), 'LFB_ERR_INVALID_ARGUMENT');
    const other = join(s.dir, 'other');
    await ok(['repo', 'init', other]);
    fails(await cli(['tier', 'set', '--repo', s.repo, '--capacity', other, '--copy-new']), 'LFB_ERR_REPO_EXISTS');
    await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--copy-new']);
    await ok(['tier', 'run', '--repo', s.repo]);
    // The extent holds this repository now: setting it again is fine; another repository may not take it.
    await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--copy-new', '--schedule', '0 3 * * *']);
    await ok(['tier', 'set', '--repo', other, '--capacity', join(s.dir, 'cap2'), '--copy-new']);
    fails(await cli(['tier', 'set', '--repo', other, '--capacity', s.cap, '--copy-new']), 'LFB_ERR_REPO_EXISTS');
    // Nothing lives only on the extent: the tier can go.
    await ok(['tier', 'clear', '--repo', s.repo]);
    fails(await cli(['tier', 'show', '--repo', s.repo]), 'LFB_ERR_NO_CAPACITY_TIER');
    await allRestore(s);
  }));

test('a tier run killed at each of its durable steps (LIFEBOAT_CRASH_AT) leaves every point listed and whole; a run after it finishes the move', async () =>
  withScene('steps', 15, ['--method', 'forward', '--retain-points', '10'], async (s) => {
    await s.backup(day(1));
    await s.backup(day(2));
    await s.backup(day(5), ['--active-full']);
    await ok(['tier', 'set', '--repo', s.repo, '--capacity', s.cap, '--move-after-days', '3']);
    const template = join(s.dir, 'template');
    await mkdir(template);
    await cp(s.repo, join(template, 'repo'), { recursive: true, preserveTimestamps: true });
    const reset = async (): Promise<void> => {
      await rm(s.repo, { recursive: true, force: true });
      await rm(s.cap, { recursive: true, force: true });
      await cp(join(template, 'repo'), s.repo, { recursive: true, preserveTimestamps: true });
    };
    const env = { LIFEBOAT_NOW: day(6) };
    const countFile = join(s.dir, 'count');
    await ok(['tier', 'run', '--repo', s.repo], { ...env, LIFEBOAT_CRASH_REPORT: countFile });
    const steps = Number(await readFile(countFile, 'utf8'));
    assert.ok(steps >= 10, `a move passes its durable steps (${steps})`);
    for (let n = 1; n <= steps; n++) {
      await reset();
      const r = await cli(['tier', 'run', '--repo', s.repo], { ...env, LIFEBOAT_CRASH_AT: String(n) });
      assert.equal(r.signal, 'SIGKILL', `step ${n} of ${steps}: the run was killed there`);
      // Every point listed after each step; every fourth step (and the last) each point restored bit-exact and verified.
      if (n % 4 === 1 || n === steps) {
        await allRestore(s);
        assert.match(await ok(['verify', 'vm', '--repo', s.repo, '--all']), /^OK: .* 3 point\(s\) checked/m, `step ${n}`);
      } else assert.deepEqual((await points(s.repo)).filter((p) => p.available).length, 3, `step ${n}: every point listed`);
      const after = JSON.parse(await ok(['tier', 'run', '--repo', s.repo, '--json'], env)) as { freed: unknown[] };
      assert.ok(after.freed.length <= 2);
      assert.deepEqual(Object.values(await places(s.repo)).sort(), ['capacity', 'capacity', 'local'], `step ${n}: the next run finished the move`);
    }
    await allRestore(s);
  }));
