import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { BlockWorkerPool } from '../compress/block-pool.js';
import { BackupFileReader } from './backup-file.js';
import { filesForPoint, type ChainFile, type JobState } from './job-state.js';
import { resolvePoint } from './point-ref.js';

/** One thing `verify` found wrong: a file that cannot be opened, or a block. */
export interface VerifyProblem {
  readonly file: string;
  readonly code: string;
  readonly message: string;
  readonly disk?: number;
  readonly block?: number;
  readonly offset?: number;
}

export interface VerifyResult {
  readonly files: number;
  readonly blocks: number;
  readonly storedBytes: number;
  readonly points: readonly string[];
  readonly problems: readonly VerifyProblem[];
}

export interface VerifyProgress {
  readonly blocksDone: number;
  readonly blocksTotal: number;
}

/**
 * The health check: reads every stored block of the files a point needs (or
 * of every file of the job), decompresses it and checks its SHA-256 — always
 * the SHA-256, even where a zstd frame checksum would do for serving — and
 * every file's header, slots and root (by opening it). Each stored block is
 * checked once however many entries share it. Never writes anything.
 */
export async function verifyJob(
  state: JobState,
  which: { point?: string | undefined; all: boolean },
  onProgress?: (p: VerifyProgress) => void,
  /** Workers to decode with (kept open); default: a pool of its own. */
  sharedPool?: BlockWorkerPool,
): Promise<VerifyResult> {
  const problems: VerifyProblem[] = [];
  for (const d of state.damaged) problems.push({ file: d.file, code: d.code, message: d.message });
  let files: ChainFile[];
  let points: string[];
  if (which.all) {
    files = state.chains.flatMap((c) => [c.full, ...c.increments, ...c.rollbacks]);
    points = state.points.map((p) => p.id);
  } else {
    if (state.points.length === 0 && problems.length > 0) return { files: 0, blocks: 0, storedBytes: 0, points: [], problems };
    const p = resolvePoint(state, which.point ?? 'latest', { allowDamaged: true });
    files = filesForPoint(state, p.id)!;
    points = [p.id];
  }
  const readers: { file: ChainFile; reader: BackupFileReader }[] = [];
  const pool = sharedPool ?? new BlockWorkerPool();
  let blocks = 0;
  let storedBytes = 0;
  try {
    for (const f of files) {
      try {
        readers.push({ file: f, reader: await BackupFileReader.open(f.path, { storage: state.storage }) });
      } catch (err) {
        if (!isLifeboatError(err)) throw err;
        problems.push({ file: f.name, code: err.code, message: err.message });
      }
    }
    const total = readers.reduce((a, r) => a + r.reader.root.tables.reduce((b, t) => b + t.count, 0), 0);
    let done = 0;
    let lastReport = 0;
    const window = pool.size * 4;
    for (const { reader } of readers) {
      const seen = new Set<number>();
      const inflight = new Set<Promise<void>>();
      for (let disk = 0; disk < reader.root.tables.length; disk++) {
        const t = reader.root.tables[disk]!;
        const size = reader.root.diskSizes[disk]!;
        for (let slot = 0; slot < t.count; slot++) {
          done += 1;
          if (t.isZero(slot) || seen.has(t.offset(slot))) continue;
          seen.add(t.offset(slot));
          const bi = t.blockIndex(slot);
          const rawLength = Math.min(reader.header.blockSize, size - bi * reader.header.blockSize);
          blocks += 1;
          storedBytes += t.storedLength(slot);
          const job = (async (): Promise<void> => {
            // A block that cannot be read (past the end, or the device fails) is as lost as one that fails its checksum.
            let e: LifeboatError | undefined;
            try {
              const r = await pool.decode(await reader.readStored(t, slot), t.codec(slot), rawLength, t.digest(slot), undefined, true, reader.keys);
              if (r.data === null) e = reader.blockError(t, slot, r.problem ?? 'is damaged');
            } catch (err) {
              if (!isLifeboatError(err) || err.code === 'LFB_ERR_INTERNAL') throw err;
              e = err.code === 'LFB_ERR_BLOCK_CORRUPT' ? err : reader.blockError(t, slot, `cannot be read (${err.message})`);
            }
            if (e) problems.push({ file: reader.name, code: e.code, message: e.message, disk, block: bi, offset: t.offset(slot) });
          })();
          inflight.add(job);
          // Settled either way (a failure surfaces through the race or Promise.all below, never as an unhandled rejection).
          void job.then(
            () => inflight.delete(job),
            () => inflight.delete(job),
          );
          if (inflight.size >= window) await Promise.race(inflight);
          if (onProgress && done - lastReport >= 64) {
            lastReport = done;
            onProgress({ blocksDone: done, blocksTotal: total });
          }
        }
      }
      await Promise.all(inflight);
    }
    onProgress?.({ blocksDone: total, blocksTotal: total });
  } finally {
    try {
      await Promise.all(readers.map((r) => r.reader.close()));
    } finally {
      if (pool !== sharedPool) await pool.close();
    }
  }
  if (files.length === 0 && problems.length === 0) throw new LifeboatError('LFB_ERR_NO_POINTS', 'the job has no backup files to verify');
  problems.sort((a, b) => a.file.localeCompare(b.file) || (a.offset ?? -1) - (b.offset ?? -1));
  return { files: files.length, blocks, storedBytes, points, problems };
}
