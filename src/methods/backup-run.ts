import { join } from 'node:path';
import { weekdayOf, type Clock } from '../core/clock.js';
import { newPointId, newUuid } from '../core/ids.js';
import { StepTimes } from '../core/step-times.js';
import { throwIfInterrupted } from '../core/cancel.js';
import { BlockWorkerPool, parseCompression } from '../compress/index.js';
import { FILE_EXTENSIONS, FORMAT_CURRENT, type FileKind } from '../format/constants.js';
import { lockAt } from '../storage/index.js';
import { BackupFileWriter } from '../repository/backup-file-writer.js';
import { loadJob, type JobDefinition } from '../repository/job.js';
import { cleanupJob, filesForPoint, scanJob, writeVbm, type JobState } from '../repository/job-state.js';
import { RestorePointDisk } from '../repository/restore-point-disk.js';
import type { Repository } from '../repository/repository.js';
import { guardImmutableBackup, sealJobFiles } from '../repository/immutability.js';
import type { OpenedSource } from '../source/index.js';
import { EarlyDaemons, givenVm, openJobSources, trackingOf } from './job-sources.js';
import { applyRetention, gfsSyntheticFullDue, type AppliedAction } from './retention-run.js';
import { resolveVmConfig } from './vm-config.js';
import { backupDisk, type BackupProgress, type PreviousPoint } from './block-pipeline.js';
import { closeAll } from './close-all.js';
import { checkSourceChange } from './source-change.js';
import { synthesizeFull, type SyntheticFullResult } from './synthetic-full.js';
import { reverseIncrement } from './reverse-run.js';
import { chainToTransform, transformObstacle, transformToRollbacks, type TransformResult } from './transform.js';

export type { BackupProgress } from './block-pipeline.js';

export interface BackupOptions {
  readonly clock: Clock;
  readonly activeFull?: boolean;
  /** Wait this long for another run of the job to finish instead of failing at once. */
  readonly waitMs?: number;
  readonly onProgress?: (p: BackupProgress) => void;
  /** Workers for hashing and compression (default: one per core). */
  readonly workers?: number;
  /** A pool to use instead of starting one (kept open): runs one after another share its workers. */
  readonly pool?: BlockWorkerPool;
  /** Back up a source that shrank to less than half or changed format since the newest point (refused otherwise). */
  readonly acceptSourceChange?: boolean;
  /** Aborted (SIGINT, SIGTERM): the run stops at its next safe point with LFB_ERR_INTERRUPTED. */
  readonly signal?: AbortSignal;
}

export interface BackupResult {
  readonly pointId: string;
  readonly kind: FileKind;
  readonly file: string;
  readonly trigger: string;
  readonly bytesRead: number;
  readonly bytesStored: number;
  readonly blocksStored: number;
  readonly blocksZero: number;
  readonly blocksUnchanged: number;
  readonly blocksDeduped: number;
  readonly cleanedUp: readonly string[];
  readonly retention: readonly AppliedAction[];
  /** Set when today's increment was turned into a synthetic full. */
  readonly synthetic?: SyntheticFullResult;
  /** With --transform-to-rollbacks: the older chain turned into rollbacks, or why it could not be. */
  readonly transform?: TransformResult | { readonly skipped: string };
  /** Milliseconds of wall time by step of the run (scan, open, data, commit, retention, …). */
  readonly steps: Record<string, number>;
}

/** One backup run of a job: a full or an increment, then retention. One run per job at a time. */
export async function runBackup(repo: Repository, jobName: string, opts: BackupOptions): Promise<BackupResult> {
  const steps = new StepTimes();
  const dir = repo.jobDir((await loadJob(repo, jobName)).name);
  // A job deleted while we waited has no folder left to lock: say so as loadJob does.
  const lock = await lockAt(repo.storage, join(dir, 'lock'), `job "${jobName}"`, { waitMs: opts.waitMs ?? 0, signal: opts.signal }).catch(
    async (err: unknown) => {
      await loadJob(repo, jobName);
      throw err;
    },
  );
  steps.lap('lock');
  const storage = repo.storage;
  /** The new point's sources closing, which the steps after the commit do not wait for. */
  let sourcesClosed: Promise<void> = Promise.resolve();
  let early: EarlyDaemons | undefined;
  try {
    // Read again under the lock: a `job set` or `job delete` that finished while we waited is what counts.
    const job = await loadJob(repo, jobName);
    // An immutable repository: refused before anything is written if the job would rewrite files or the attribute cannot be set.
    await guardImmutableBackup(repo, job);
    // A CBT qcow2 disk's storage daemon comes up while the job's files are scanned.
    early = EarlyDaemons.start(job);
    let state = await scanJob(dir, storage);
    const cleanedUp = await cleanupJob(state);
    if (cleanedUp.length > 0) state = await scanJob(dir, storage);
    // Files a crash left unsealed (committed, then killed before the end of the run) are sealed now.
    await sealJobFiles(repo, job, state, opts.clock.now());
    steps.lap('scan');
    throwIfInterrupted(opts.signal);
    const now = opts.clock.now();
    const { decision, repair } = repairDecision(job, state, decideKind(job, state, now, opts.activeFull === true));
    let result: Omit<BackupResult, 'cleanedUp' | 'retention' | 'steps'> | undefined;
    const latestChain = state.chains[state.chains.length - 1];
    if (job.method === 'reverse' && decision.kind === 'increment' && latestChain && latestChain.increments.length === 0) {
      const r = await reverseIncrement(job, dir, state, latestChain, now, opts, 'reverse incremental run');
      steps.lap('reverse');
      if (r) result = { ...r, kind: 'full', trigger: `reverse incremental run (old blocks into ${r.rollback})` };
    }
    if (result === undefined) {
      const { sourcesClosed: closing, ...point } = await writePoint(
        job,
        dir,
        state,
        job.method === 'reverse' && decision.kind === 'increment'
          ? { kind: 'full', trigger: 'disk sizes changed (a reverse chain needs equal sizes)' }
          : decision,
        now,
        opts,
        steps,
        early,
        repair,
      );
      result = point;
      sourcesClosed = closing;
    }
    state = await scanJob(dir, storage);
    steps.lap('scan');
    /** After the commit: a stopped run seals what it committed first (an immutable repository has no mutable point until a next run). */
    const stopIfInterrupted = async (): Promise<void> => {
      if (opts.signal?.aborted === true) await sealJobFiles(repo, job, state, opts.clock.now());
      throwIfInterrupted(opts.signal);
    };
    // The point is committed: stopping here leaves it whole, and the next run does what this one skips.
    await stopIfInterrupted();
    let synthetic: SyntheticFullResult | undefined;
    // GFS with no full day scheduled: the first run of each GFS period makes the full GFS keeps.
    if (decision.kind === 'increment' && (syntheticDue(job, state, now) || gfsSyntheticFullDue(job, state, now) !== undefined)) {
      synthetic = await synthesizeFull(job, dir, state, result.pointId, fileStamp(now), { pool: opts.pool });
      state = await scanJob(dir, storage);
      steps.lap('synthetic full');
    }
    // Also after an interrupted run: a pending transform is found from the files alone.
    let transform: BackupResult['transform'];
    await stopIfInterrupted();
    const pending = job.transformToRollbacks ? chainToTransform(state) : undefined;
    if (pending) {
      const obstacle = transformObstacle(pending.older, pending.newer);
      transform = obstacle ? { skipped: obstacle } : await transformToRollbacks(job, dir, state, pending.older, pending.newer, { pool: opts.pool });
      state = await scanJob(dir, storage);
      steps.lap('transform');
    }
    // Sealed once the run's files are final (a synthetic full deletes the increment it was made from), dated from now, not the run's start.
    if ((await sealJobFiles(repo, job, state, opts.clock.now())).length > 0) steps.lap('seal');
    await stopIfInterrupted();
    const retention = await applyRetention(job, dir, state, now, { immutableDays: repo.config.immutableDays, pool: opts.pool });
    // Files change only by an action carried out: a run that kept everything (most runs) needs no second look.
    if (retention.some((a) => a.skipped === undefined)) state = await scanJob(dir, storage);
    steps.lap('retention');
    await writeVbm(job, state, now);
    steps.lap('metadata');
    await sourcesClosed;
    steps.lap('close source');
    return { ...result, cleanedUp, retention, ...(synthetic ? { synthetic } : {}), ...(transform ? { transform } : {}), steps: steps.toJSON() };
  } finally {
    // Closed before the lock goes, whatever failed after the commit: the next run opens the same image.
    await early?.stop();
    await sourcesClosed.catch(() => undefined);
    await lock.release();
  }
}

interface Decision {
  readonly kind: 'full' | 'increment';
  readonly trigger: string;
}

/** Blocks (by disk) to read from the source and store whatever the previous point's digest says. */
type RepairBlocks = ReadonlyMap<number, ReadonlySet<number>>;

/**
 * When the health check marked the latest point damaged, this run repairs
 * it: an increment that stores the damaged blocks again, read from the
 * source (so the new point is whole), or an active full when the damage is
 * not a known list of blocks (a file that cannot be opened) or the chain is
 * reverse incremental (its in-place update would move damaged blocks).
 */
function repairDecision(job: JobDefinition, state: JobState, decision: Decision): { decision: Decision; repair?: RepairBlocks } {
  const latest = state.points[state.points.length - 1];
  const damage = latest && state.damagedPoints.get(latest.id);
  if (!damage || decision.kind === 'full') return { decision };
  if (damage.files.length > 0 || damage.blockCount > damage.blocks.length || job.method === 'reverse') {
    return { decision: { kind: 'full', trigger: `repair: the latest point ${latest.id} is damaged, so an active full` } };
  }
  const repair = new Map<number, Set<number>>();
  for (const b of damage.blocks) repair.set(b.disk, (repair.get(b.disk) ?? new Set()).add(b.block));
  return { decision: { kind: 'increment', trigger: `repair: ${damage.blockCount} damaged block(s) of point ${latest.id} read again from the source` }, repair };
}

function sameUtcDay(a: Date, b: Date): boolean {
  return a.toISOString().slice(0, 10) === b.toISOString().slice(0, 10);
}

/** First run, --active-full, or a scheduled weekday (at most one per day) → full; else increment. */
function decideKind(job: JobDefinition, state: JobState, now: Date, forced: boolean): Decision {
  const latest = state.chains[state.chains.length - 1];
  if (latest === undefined) return { kind: 'full', trigger: 'first run of the job' };
  if (forced) return { kind: 'full', trigger: 'active full requested' };
  if (latest.full.header.blockSize !== job.blockSize) return { kind: 'full', trigger: 'block size changed' };
  if (latest.full.header.diskSizes.length !== job.disks.length) return { kind: 'full', trigger: 'disk list changed' };
  if (job.activeFullDays.includes(weekdayOf(now))) {
    const fullToday = state.chains.some((c) => sameUtcDay(new Date(c.full.header.createdAtMs), now));
    if (!fullToday) return { kind: 'full', trigger: `scheduled active full (${weekdayOf(now)})` };
  }
  return { kind: 'increment', trigger: 'incremental run' };
}

/** A scheduled synthetic-full day with no full (active or synthetic) made yet that day: an active full wins the tie. */
function syntheticDue(job: JobDefinition, state: JobState, now: Date): boolean {
  if (!(job.syntheticFullDays ?? []).includes(weekdayOf(now))) return false;
  return !state.chains.some((c) => sameUtcDay(new Date(c.full.header.createdAtMs), now));
}

export function fileStamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/** A point writePoint committed, and its sources' closing (still under way). */
type WrittenPoint = Omit<BackupResult, 'cleanedUp' | 'retention' | 'steps'> & { readonly sourcesClosed: Promise<void> };

async function writePoint(
  job: JobDefinition,
  dir: string,
  state: JobState,
  decision: Decision,
  now: Date,
  opts: BackupOptions,
  steps: StepTimes,
  early: EarlyDaemons,
  repair?: RepairBlocks,
): Promise<WrittenPoint> {
  let opened: OpenedSource[] = [];
  const previous: RestorePointDisk[] = [];
  const pool = opts.pool ?? new BlockWorkerPool(opts.workers);
  let writer: BackupFileWriter | undefined;
  try {
    const latestChain = state.chains[state.chains.length - 1];
    const parent = decision.kind === 'increment' ? state.points[state.points.length - 1] : undefined;
    const parentFiles = parent ? filesForPoint(state, parent.id)! : undefined;
    const pointId = newPointId();
    // CBT bitmaps track from the newest point, whatever kind this run is.
    const newest = state.points[state.points.length - 1];
    // The source (a helper process to start, QMP and NBD round trips) and the previous point (its block tables) open side by side.
    const openPrevious = async (): Promise<void> => {
      // Each disk is kept as soon as it opens, so a failure on the way closes those already open.
      if (parentFiles)
        for (let d = 0; d < job.disks.length; d++) previous.push(await RestorePointDisk.open(parentFiles, d, { cacheBytes: 0, storage: state.storage }));
    };
    const [sourcesOpened, previousOpened] = await Promise.allSettled([
      openJobSources(job, pointId, newest ? filesForPoint(state, newest.id)!.at(-1) : undefined, { readAll: repair !== undefined, early }),
      openPrevious(),
    ]);
    if (sourcesOpened.status === 'fulfilled') opened = sourcesOpened.value;
    if (sourcesOpened.status === 'rejected') throw sourcesOpened.reason;
    if (previousOpened.status === 'rejected') throw previousOpened.reason;
    if (opts.acceptSourceChange !== true) checkSourceChange(job.name, newest, opened);
    const sources = opened.map((o) => o.source);
    steps.lap('open source and previous point');
    const kind: FileKind = decision.kind;
    const chainId = kind === 'full' ? newUuid() : latestChain!.chainId;
    const blockSize = kind === 'full' ? job.blockSize : latestChain!.full.header.blockSize;
    const name = `${fileStamp(now)}_${pointId}${FILE_EXTENSIONS[kind]}`;
    const diskSizes = sources.map((s) => s.size);
    writer = await BackupFileWriter.create(
      join(dir, name),
      {
        formatVersion: FORMAT_CURRENT,
        kind,
        blockSize,
        createdAtMs: now.getTime(),
        fileId: newUuid(),
        chainId,
        jobId: job.jobId,
        diskSizes,
      },
      state.storage,
    );
    const compression = parseCompression(job.compression);
    const totals = { bytesRead: 0, blocksStored: 0, blocksZero: 0, blocksUnchanged: 0 };
    for (let d = 0; d < sources.length; d++) {
      const prev = previous[d] ?? null;
      const forced = repair?.get(d);
      // A damaged block never matches: it is stored again (or recorded as zero) from the source.
      const base: PreviousPoint | null = prev && forced ? { size: prev.size, digestOf: (bi) => (forced.has(bi) ? NEVER_MATCHES : prev.digestOf(bi)) } : prev;
      await backupDisk(sources[d]!, d, sources.length, writer, base, blockSize, compression, pool, totals, opts.onProgress, opts.signal);
    }
    steps.lap('data');
    const seq = Math.max(0, ...state.points.map((p) => p.seq), ...state.chains.map((c) => c.full.root.seq)) + 1;
    const vm = resolveVmConfig(
      job.name,
      givenVm(job, opened),
      opened.map((o) => ({ path: o.source.path, size: o.source.size, format: o.format })),
    );
    // Without a parent every block was read: whatever tracking was set up, this point's changes are a full read.
    // With one, every block read was compared with the parent's digest: at least a hash comparison.
    const changes = trackingOf(opened).map((t) =>
      parent ? (t.method === 'full' ? { ...t, method: 'hash' as const } : t) : { method: 'full' as const, ...(t.bitmap ? { bitmap: t.bitmap } : {}) },
    );
    await writer.commit({
      kind,
      seq,
      createdAtMs: now.getTime(),
      pointId,
      parentPointId: parent?.id ?? null,
      mergedCount: 0,
      diskSizes,
      meta: { vm, trigger: decision.trigger, changes },
    });
    steps.lap('commit');
    // The point is in: the sources close (a storage daemon stores its bitmaps and flushes the image) while the run
    // goes on to its scan, retention and metadata, which never touch them. Old bitmaps go once the image is closed
    // (qemu-img needs its write lock). Handled at once, so a failure waits for runBackup's await, not the process's.
    const closing = opened;
    opened = [];
    const sourcesClosed = (async () => {
      await closeAll(closing.map((o) => o.source.close()));
      for (const o of closing) await o.committed();
    })();
    sourcesClosed.catch(() => undefined);
    const stored = writer.storedBytes;
    const deduped = writer.dedupedBlocks;
    writer = undefined;
    return {
      sourcesClosed,
      pointId,
      kind,
      file: name,
      trigger: decision.trigger,
      bytesRead: totals.bytesRead,
      bytesStored: stored,
      blocksStored: totals.blocksStored,
      blocksZero: totals.blocksZero,
      blocksUnchanged: totals.blocksUnchanged,
      blocksDeduped: deduped,
    };
  } finally {
    if (writer) await writer.abort();
    if (pool !== opts.pool) await pool.close();
    await closeAll([...opened.map((o) => o.source.close()), ...previous.map((p) => p.close())]);
  }
}

/** A damaged block's digest in a repair run: equal to no real digest, so the block is stored again. */
const NEVER_MATCHES = Buffer.alloc(32, 0xff);
