import { join } from 'node:path';
import type { LifeboatService } from '../../app/service.js';
import type { ChangeMethod } from '../../catalog/catalog.js';
import type { BlockWorkerPool } from '../../compress/block-pool.js';
import { ERROR_CODES, LifeboatError, type ErrorCode } from '../../core/errors.js';
import type { BackupProgress, BackupResult } from '../../methods/backup-run.js';
import type { Root } from '../../format/index.js';
import { BackupFileReader, Repository, loadJob, scanJob } from '../../repository/index.js';

/** What a run asks of one backup, beyond the job's own settings. */
export interface BackupRequest {
  /** Aborted with a LifeboatError: the backup stops at its next safe point with LFB_ERR_INTERRUPTED and that error's words. */
  readonly signal: AbortSignal;
  readonly onProgress: (p: BackupProgress) => void;
  readonly activeFull?: boolean | undefined;
  readonly acceptSourceChange?: boolean | undefined;
  readonly waitMs?: number | undefined;
  /** The run the backup is part of (a data mover is told, and its log lines name it). */
  readonly runId?: number | undefined;
  /** A line for the run's log (where the backup went: a data mover taking it, or losing it). */
  readonly note?: ((level: 'info' | 'warn', message: string) => void) | undefined;
}

/** How a point's changes were found, as its backup file records it; `fellBack` when the job has CBT and the increment did not use it. */
export interface PointChanges {
  readonly method: ChangeMethod | null;
  readonly reason: string | null;
  readonly fellBack: boolean;
}

export interface BackupOutcome {
  readonly result: BackupResult;
  readonly changes: PointChanges;
}

/**
 * The one thing a run of the service needs to back up a job: where the
 * backup runs is the runner's business (this thread, or the data mover's).
 */
export interface BackupRunner {
  backup(repo: string, job: string, request: BackupRequest): Promise<BackupOutcome>;
}

/** Backups on the calling thread (the CLI-less tests with a manual clock; the data mover's thread itself). */
export class InProcessBackupRunner implements BackupRunner {
  constructor(
    private readonly service: LifeboatService,
    private readonly pool?: BlockWorkerPool | undefined,
  ) {}

  async backup(repo: string, job: string, request: BackupRequest): Promise<BackupOutcome> {
    const result = await this.service.backup(repo, job, {
      signal: request.signal,
      onProgress: request.onProgress,
      ...(this.pool ? { pool: this.pool } : {}),
      ...(request.activeFull ? { activeFull: true } : {}),
      ...(request.acceptSourceChange ? { acceptSourceChange: true } : {}),
      ...(request.waitMs ? { waitMs: request.waitMs } : {}),
    });
    return { result, changes: await pointChanges(repo, job, result) };
  }
}

const NO_CHANGES: PointChanges = { method: null, reason: null, fellBack: false };

/**
 * How the point a backup made found its changes: from the root of the file
 * it wrote (one file's header, not a scan of the job), or, when retention
 * or a synthetic full has since moved the point to another file, from a
 * scan of the job's files.
 */
export async function pointChanges(repoDir: string, jobName: string, result: BackupResult): Promise<PointChanges> {
  try {
    const repo = await Repository.open(repoDir);
    const job = await loadJob(repo, jobName);
    const root = (await rootOf(join(repo.jobDir(job.name), result.file), repo, result.pointId)) ?? (await scannedRoot(repo, job.name, result.pointId));
    if (root === undefined) return NO_CHANGES;
    const changes = root.meta.changes ?? [];
    if (changes.length === 0) return NO_CHANGES;
    // The weakest method of its disks says what the run did.
    const order: ChangeMethod[] = ['full', 'hash', 'cbt'];
    const method = changes.map((c) => c.method).sort((a, b) => order.indexOf(a) - order.indexOf(b))[0]!;
    const notes = changes.map((c) => c.note).filter((n): n is string => n !== undefined);
    return { method, reason: notes.length ? notes.join('; ') : null, fellBack: job.cbt === true && root.parentPointId !== null && method !== 'cbt' };
  } catch {
    return NO_CHANGES;
  }
}

/** The root of one backup file, if it holds that point. */
async function rootOf(path: string, repo: Repository, pointId: string): Promise<Root | undefined> {
  try {
    const reader = await BackupFileReader.open(path, { storage: repo.storage });
    await reader.close();
    return reader.root.pointId === pointId ? reader.root : undefined;
  } catch {
    return undefined;
  }
}

async function scannedRoot(repo: Repository, job: string, pointId: string): Promise<Root | undefined> {
  const state = await scanJob(repo.jobDir(job), repo.storage);
  return state.chains.flatMap((c) => [c.full, ...c.increments, ...c.rollbacks]).find((f) => f.root.pointId === pointId)?.root;
}

/** A LifeboatError as it crosses a thread boundary (an Error's class does not survive structured cloning). */
export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly details: Record<string, unknown>;
}

export function errorToWire(err: unknown): WireError {
  if (err instanceof LifeboatError) return { code: err.code, message: err.message, details: cloneableDetails(err.details) };
  return { code: 'LFB_ERR_INTERNAL', message: err instanceof Error ? err.message : String(err), details: {} };
}

export function errorFromWire(w: WireError): LifeboatError {
  const code: ErrorCode = w.code in ERROR_CODES ? (w.code as ErrorCode) : 'LFB_ERR_INTERNAL';
  return new LifeboatError(code, w.message, { details: w.details });
}

/** Details are facts (paths, numbers, names): whatever JSON cannot carry is dropped rather than failing the message. */
function cloneableDetails(details: Readonly<Record<string, unknown>>): Record<string, unknown> {
  try {
    return JSON.parse(JSON.stringify(details)) as Record<string, unknown>;
  } catch {
    return {};
  }
}
