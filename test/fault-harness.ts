/**
 * The fault sweep shared by the test/fault-*.test.ts files (kopia's and
 * restic's fault-injecting test backends, applied call by call).
 *
 * A scenario builds a repository and its source disks once (the template).
 * The operation under test runs once on a copy through a FaultyStorage with
 * no rules, which counts its storage calls. Then, for each call index i, the
 * operation runs again on a fresh copy with a fault at call i, and:
 *   - it completes, or fails with the LifeboatError the fault calls for
 *     (LFB_ERR_IO for EIO and a lost fsync, LFB_ERR_NO_SPACE for ENOSPC and
 *     a short write): never a TypeError, never an unhandled rejection;
 *   - no file is damaged, no point orphaned, no temporary file left behind;
 *   - every point the template had is still there (unless the operation
 *     without faults removes it too) and restores bit-exact; a point the run
 *     made restores as the source reads now;
 *   - `verify --all` finds every stored block of every file whole;
 *   - the next run, without faults, succeeds, and the checks above hold after it.
 * Copies live at one path, so the absolute disk paths in job.json stay valid.
 */
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { cp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isLifeboatError } from '../src/core/errors.js';
import { BlockWorkerPool } from '../src/compress/block-pool.js';
import { parseCompression } from '../src/compress/codec.js';
import { fixedClock } from '../src/core/clock.js';
import { runBackup } from '../src/methods/backup-run.js';
import { createJob, filesForPoint, Repository, RestorePointDisk, scanJob, verifyJob, type JobDefinition, type JobState } from '../src/repository/index.js';
import { localStorage, type Storage } from '../src/storage/index.js';
import { FaultyStorage, type Fault, type FaultRule, type StorageCall } from '../src/testing/faulty-storage.js';
import { randomBytes, rng, tempDir } from './helpers.js';

export interface FaultScenario {
  /** The job the operation works on, in `<work>/repo`. */
  readonly job: string;
  /** Point id → the bytes of its disks, for every point of the template. */
  readonly expected: ReadonlyMap<string, readonly Buffer[]>;
  /** What the source disks read as now: a point the operation makes holds this. */
  readonly current: readonly Buffer[];
  /** The operation under test, on the repository `<work>/repo`, every file through `storage`; `pool`: workers to share. */
  run(storage: Storage, pool: BlockWorkerPool): Promise<unknown>;
}

export interface FaultPlan {
  /** Faults at these call indexes (all calls counted); default: every call. */
  readonly eioAt?: (calls: readonly StorageCall[]) => readonly number[];
  /** How many of the other faults (ENOSPC at any call, short writes, lost fsyncs) to inject, spread evenly. */
  readonly others: number;
}

export interface SweepReport {
  readonly calls: number;
  readonly injected: number;
  readonly failed: number;
  readonly completed: number;
  readonly byOp: Record<string, number>;
}

/**
 * The local file system without fsyncs: these tests check how faults are
 * handled, not durability (the crash tests do), and thousands of fsyncs on a
 * shared disk would take most of their time.
 */
export const unsyncedStorage: Storage = {
  open: async (path, mode) => {
    const f = await localStorage.open(path, mode);
    return {
      path: f.path,
      pread: (into, position) => f.pread(into, position),
      pwrite: (data, position) => f.pwrite(data, position),
      sync: async () => undefined,
      datasync: async () => undefined,
      truncate: (length) => f.truncate(length),
      size: () => f.size(),
      close: () => f.close(),
    };
  },
  rename: (from, to) => localStorage.rename(from, to),
  remove: (path) => localStorage.remove(path),
  list: (dir) => localStorage.list(dir),
  syncDir: async () => undefined,
  mkdir: (dir) => localStorage.mkdir(dir),
};

const EXPECTED_CODE: Record<Fault, string> = { EIO: 'LFB_ERR_IO', 'fsync-lost': 'LFB_ERR_IO', ENOSPC: 'LFB_ERR_NO_SPACE', 'short-write': 'LFB_ERR_NO_SPACE' };

const READS: ReadonlySet<string> = new Set(['pread', 'size', 'close', 'list']);

/**
 * For runs of many calls: every call that can change the repository (open,
 * pwrite, sync, truncate, rename, remove, mkdir) and every `k`-th of the
 * calls that only read (pread, size, close, list; most of them the scans
 * re-reading each file's header and root), by position in the run.
 */
export function changesAndEveryKthRead(k: number): (calls: readonly StorageCall[]) => number[] {
  return (calls) => {
    let reads = 0;
    return calls.flatMap((c, i) => (!READS.has(c.op) || reads++ % k === 0 ? [i] : []));
  };
}

/** `count` indexes out of `n`, evenly spread, first and last included (all of them when count ≥ n). */
export function spread(n: number, count: number): number[] {
  if (count >= n) return Array.from({ length: n }, (_, i) => i);
  if (count <= 1) return n > 0 ? [0] : [];
  return [...new Set(Array.from({ length: count }, (_, k) => Math.round((k * (n - 1)) / (count - 1))))];
}

/**
 * Runs the sweep. `work` is an empty folder; `build` makes the template's
 * repository and disks in `work` (local storage) and returns the scenario.
 */
export async function faultSweep(work: string, build: () => Promise<FaultScenario>, plan: FaultPlan): Promise<SweepReport> {
  const template = `${work}.template`;
  await mkdir(work, { recursive: true });
  const scenario = await build();
  await rm(template, { recursive: true, force: true });
  await cp(work, template, { recursive: true });
  // Runs change only the job's folder: copying just it back spares copying the disks each time.
  const jobDir = join('repo', 'jobs', scenario.job);
  const fresh = async (): Promise<void> => {
    await rm(join(work, jobDir), { recursive: true, force: true });
    await cp(join(template, jobDir), join(work, jobDir), { recursive: true });
  };
  // One worker pool for every run and check: starting workers would take most of the time.
  const pool = new BlockWorkerPool(1);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    // The run without faults: how many calls, and which points it removes (retention, merges).
    const counting = new FaultyStorage(unsyncedStorage);
    await scenario.run(counting, pool);
    const calls = counting.calls;
    const after = await scanJob(join(work, 'repo', 'jobs', scenario.job));
    const mayGo = new Set([...scenario.expected.keys()].filter((id) => !after.points.some((p) => p.id === id)));
    await checkRepository(scenario, after, mayGo, 'the run without faults', pool);

    // A rule names the call at its number in the counting run. A job's scan reads several files at once, so during a
    // scan the call at that number may be another file's in a faulted run; what the sweep checks holds either way.
    const rules: { rule: FaultRule; what: string }[] = [];
    for (const i of plan.eioAt ? plan.eioAt(calls) : spread(calls.length, calls.length))
      rules.push({ rule: { nth: i, fault: 'EIO' }, what: `EIO at call ${i} (${calls[i]?.op} ${calls[i]?.path})` });
    const pwrites = calls.filter((c) => c.op === 'pwrite').length;
    const syncs = calls.filter((c) => c.op === 'sync' || c.op === 'datasync' || c.op === 'syncDir').length;
    const third = Math.max(1, Math.floor(plan.others / 3));
    for (const i of spread(calls.length, third))
      rules.push({ rule: { nth: i, fault: 'ENOSPC' }, what: `ENOSPC at call ${i} (${calls[i]?.op} ${calls[i]?.path})` });
    for (const k of spread(pwrites, third)) rules.push({ rule: { ops: ['pwrite'], nth: k, fault: 'short-write' }, what: `short write at pwrite ${k}` });
    for (const k of spread(syncs, third))
      rules.push({ rule: { ops: ['sync', 'datasync', 'syncDir'], nth: k, fault: 'fsync-lost' }, what: `lost fsync at sync ${k}` });

    let failed = 0;
    let completed = 0;
    const byOp: Record<string, number> = {};
    for (const { rule, what } of rules) {
      await fresh();
      const storage = new FaultyStorage(unsyncedStorage).fail(rule);
      const fdsBefore = openFiles();
      let error: unknown;
      try {
        await withinDeadline(scenario.run(storage, pool), () => {
          const last = storage.calls.slice(-8).map((c) => `${c.op} ${c.path}${c.fault === undefined ? '' : ` (${c.fault})`}`);
          return `${what}: the run did not end within 60 s; its last storage calls: ${last.join(', ')}`;
        });
        completed += 1;
      } catch (err) {
        if (err instanceof DeadlineExceeded) throw err;
        error = err;
        failed += 1;
      }
      const hit = storage.calls.find((c) => c.fault !== undefined);
      if (hit) byOp[hit.op] = (byOp[hit.op] ?? 0) + 1;
      if (error !== undefined) {
        assert.ok(hit, `${what}: the run failed though no fault was injected: ${String(error)}`);
        assert.ok(isLifeboatError(error), `${what}: failed with ${String((error as Error)?.stack ?? error)}, not a LifeboatError`);
        assert.equal(error.code, EXPECTED_CODE[rule.fault], `${what}: failed with ${error.code}: ${error.message}`);
      }
      await settle();
      assert.deepEqual(unhandled, [], `${what}: unhandled rejections`);
      assert.deepEqual(openFiles(), fdsBefore, `${what}: files left open`);
      const state = await scanJob(join(work, 'repo', 'jobs', scenario.job));
      await checkRepository(scenario, state, mayGo, what, pool);
      assert.deepEqual(await leftovers(state.dir), [], `${what}: temporary files left behind`);
      // The next run may catch up on retention the faulted one did not finish: points may go, none may be wrong.
      await scenario.run(unsyncedStorage, pool);
      await checkRepository(scenario, await scanJob(state.dir), new Set(scenario.expected.keys()), `${what}, then a run without faults`, pool, false);
    }
    return { calls: calls.length, injected: rules.length, failed, completed, byOp };
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await pool.close();
    await rm(template, { recursive: true, force: true });
  }
}

class DeadlineExceeded extends Error {}

/**
 * A faulted run that never ends would hang the sweep silently until the test's timeout: after 60 s (a run here
 * takes well under a second) it fails naming its fault, with the storage calls it had made.
 */
async function withinDeadline<T>(p: Promise<T>, why: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded(why())), 60_000);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The files this process has open (a run must close what it opened, whatever failed). */
function openFiles(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith('/') && !target.startsWith('/dev/') && !target.startsWith('/proc/')) out.push(target);
    } catch {
      // The descriptor readdir itself used, closed by now.
    }
  }
  return out.sort();
}

/** Lets pending microtasks and timers run, so a stray rejection shows up. */
async function settle(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 1));
}

/** Temporary files: backup files being written, atomic metadata writes. */
async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.tmp'));
}

/** The checks every state must pass; see the top of this file. */
export async function checkRepository(
  scenario: FaultScenario,
  state: JobState,
  mayGo: ReadonlySet<string>,
  where: string,
  pool: BlockWorkerPool,
  verify = true,
): Promise<void> {
  assert.deepEqual(state.damaged, [], `${where}: damaged files`);
  assert.deepEqual(state.orphans, [], `${where}: orphaned files`);
  assert.deepEqual(state.unavailable, [], `${where}: unavailable points`);
  for (const id of scenario.expected.keys()) {
    if (!mayGo.has(id))
      assert.ok(
        state.points.some((p) => p.id === id),
        `${where}: point ${id} was lost`,
      );
  }
  for (const p of state.points) {
    const want = scenario.expected.get(p.id) ?? scenario.current;
    const files = filesForPoint(state, p.id)!;
    for (let d = 0; d < want.length; d++) {
      const disk = await RestorePointDisk.open(files, d, { cacheBytes: 0 });
      try {
        assert.ok((await disk.read(0, disk.size)).equals(want[d]!), `${where}: point ${p.id} (${p.kind}) disk ${d} restores wrong bytes`);
      } finally {
        await disk.close();
      }
    }
  }
  if (verify && state.chains.length > 0) {
    const health = await verifyJob(state, { all: true }, undefined, pool);
    assert.deepEqual(health.problems, [], `${where}: verify --all`);
  }
}

export const BS = 256 * 1024;

/** Day n of the tests' calendar: day 0 is Monday 2 March 2026, day 5 a Saturday. */
export const day = (n: number): Date => new Date(Date.parse('2026-03-02T10:00:00Z') + n * 86_400_000);

/** A disk of 7 blocks and a tail: data, zero blocks, a block twice (in-file dedupe). */
function firstDisk(rand: () => number): Buffer {
  const disk = Buffer.alloc(7 * BS + 5000);
  randomBytes(rand, 3 * BS).copy(disk, 0);
  disk.copy(disk, 5 * BS, BS, 2 * BS);
  randomBytes(rand, 5000).copy(disk, 7 * BS);
  return disk;
}

/** Guest-like writes between runs: part of a block, a block zeroed or refilled, the tail. */
function mutate(disk: Buffer, rand: () => number, run: number): void {
  randomBytes(rand, 70_000).copy(disk, Math.floor(rand() * 3) * BS + 1000);
  if (run % 2 === 0) disk.fill(0, 2 * BS, 3 * BS);
  else randomBytes(rand, BS).copy(disk, 2 * BS);
  randomBytes(rand, 1000).copy(disk, 7 * BS + 100);
}

export interface JobTemplate {
  readonly repoDir: string;
  readonly expected: Map<string, Buffer[]>;
  /** The source disk as it reads now (written after the last run). */
  readonly current: Buffer[];
}

/**
 * A repository in `<work>/repo` with job "vm" (one disk, `<work>/disk0.img`)
 * and a backup run on each of `days`, the disk changing after each.
 */
export async function jobTemplate(
  work: string,
  def: Pick<JobDefinition, 'method' | 'retainPoints'> & Partial<Pick<JobDefinition, 'syntheticFullDays' | 'transformToRollbacks'>>,
  days: readonly number[],
  seed: number,
): Promise<JobTemplate> {
  const rand = rng(seed);
  const diskPath = join(work, 'disk0.img');
  const disk = firstDisk(rand);
  await writeFile(diskPath, disk);
  const repoDir = join(work, 'repo');
  const repo = await Repository.init(repoDir, { blockSize: BS, compression: parseCompression('zstd:1'), now: day(0), storage: unsyncedStorage });
  await createJob(repo, {
    name: 'vm',
    createdAt: day(0).toISOString(),
    disks: [diskPath],
    activeFullDays: [],
    blockSize: BS,
    compression: 'zstd:1',
    vm: null,
    ...def,
  });
  const expected = new Map<string, Buffer[]>();
  const pool = new BlockWorkerPool(1);
  try {
    for (const [r, n] of days.entries()) {
      const res = await runBackup(repo, 'vm', { clock: fixedClock(day(n)), pool });
      expected.set(res.pointId, [Buffer.from(disk)]);
      mutate(disk, rand, r);
      await writeFile(diskPath, disk);
    }
  } finally {
    await pool.close();
  }
  // Points merged or deleted by retention are gone: only the listed ones are expected.
  const listed = new Set((await scanJob(repo.jobDir('vm'))).points.map((p) => p.id));
  for (const id of [...expected.keys()]) if (!listed.has(id)) expected.delete(id);
  return { repoDir, expected, current: [disk] };
}

/** The operation most scenarios test: the job's backup run on day `n`. */
export function backupOn(repoDir: string, n: number): FaultScenario['run'] {
  return async (storage, pool) => runBackup(await Repository.open(repoDir, { storage }), 'vm', { clock: fixedClock(day(n)), pool });
}

/** The scenario of a backup run on day `n` of job "vm" in the template `t`. */
export function backupScenario(t: JobTemplate, n: number): FaultScenario {
  return { job: 'vm', expected: t.expected, current: t.current, run: backupOn(t.repoDir, n) };
}

/**
 * `faultSweep` in a temporary folder that is removed afterwards; `build` gets
 * the sweep's work folder. Logs the sweep's numbers under `label`.
 */
export async function sweepInTempDir(label: string, build: (work: string) => Promise<FaultScenario>, plan: FaultPlan): Promise<SweepReport> {
  const { dir, cleanup } = await tempDir();
  try {
    const work = join(dir, 'w');
    const r = await faultSweep(work, () => build(work), plan);
    console.log(`${label}: ${r.calls} storage calls, ${r.injected} faults injected (${r.failed} failed cleanly, ${r.completed} completed)`, r.byOp);
    return r;
  } finally {
    await cleanup();
  }
}
