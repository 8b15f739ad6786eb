import { join } from 'node:path';
import { newPointId, newUuid } from '../core/ids.js';
import { BlockWorkerPool, parseCompression } from '../compress/index.js';
import { BlockTableBuilder, type BlockTable } from '../format/index.js';
import { FILE_EXTENSIONS, FORMAT_CURRENT, type CodecName } from '../format/constants.js';
import { BackupFileReader } from '../repository/backup-file.js';
import { BackupFileWriter } from '../repository/backup-file-writer.js';
import { commitRoot } from '../repository/commit.js';
import type { JobDefinition } from '../repository/job.js';
import type { Chain, JobState } from '../repository/job-state.js';
import { refuseSealedJob } from '../repository/immutability.js';
import { RestorePointDisk } from '../repository/restore-point-disk.js';
import type { OpenedSource } from '../source/index.js';
import { givenVm, openJobSources, trackingOf } from './job-sources.js';
import { fileStamp, type BackupOptions, type BackupResult } from './backup-run.js';
import { backupDisk, type BlockSink } from './block-pipeline.js';
import { resolveVmConfig } from './vm-config.js';
import { closeAll } from './close-all.js';
import { checkSourceChange } from './source-change.js';

/** What a reverse run reports: a backup run's counters, plus the rollback it wrote. */
export type ReverseRunResult = Omit<BackupResult, 'kind' | 'trigger' | 'cleanedUp' | 'retention' | 'synthetic' | 'steps'> & {
  readonly rollback: string;
  /** Old versions moved into the rollback (read from the full, written to the .vrb). */
  readonly blocksRolledBack: number;
};

type Change = { readonly codec: CodecName; readonly offset: number; readonly length: number; readonly digest: Buffer } | null;

/**
 * Reverse incremental run: the full is brought forward to the new point in
 * place, and the blocks it replaces go into a new rollback (.vrb) that takes
 * the new point back to the old one. Per changed block: one read (the old
 * version, from the full), two writes (it into the rollback, the new one
 * into the full).
 *
 * Order, for crash safety: new blocks are appended after the full's committed
 * end (invisible until its next commit); the rollback is written under a
 * temporary name, synced, renamed; only then is the full's new root
 * committed through its other slot. Die before the rename: the full still
 * holds the old point and the temporary file is cleaned up. Die after it but
 * before the commit: the rollback holds the full's own point, and the scan
 * treats it as redundant. Returns undefined when the disks changed size: the
 * caller makes an active full instead.
 */
export async function reverseIncrement(
  job: JobDefinition,
  dir: string,
  state: JobState,
  chain: Chain,
  now: Date,
  opts: BackupOptions,
  trigger: string,
): Promise<ReverseRunResult | undefined> {
  await refuseSealedJob(dir, state.storage, 'a reverse-incremental run');
  let opened: OpenedSource[] = [];
  let full: BackupFileReader | undefined;
  let prevDisks: RestorePointDisk[] = [];
  let rollback: BackupFileWriter | undefined;
  const pool = opts.pool ?? new BlockWorkerPool(opts.workers);
  try {
    const pointId = newPointId();
    opened = await openJobSources(job, pointId, chain.full);
    if (opts.acceptSourceChange !== true) checkSourceChange(job.name, state.points.at(-1), opened);
    const sources = opened.map((o) => o.source);
    full = await BackupFileReader.open(chain.full.path, { writable: true, storage: state.storage });
    const f = full;
    if (sources.length !== f.root.diskSizes.length || sources.some((s, i) => s.size !== f.root.diskSizes[i])) return undefined;
    const blockSize = f.header.blockSize;
    prevDisks = await Promise.all(sources.map((_, d) => RestorePointDisk.open([chain.full], d, { cacheBytes: 0, storage: state.storage })));
    const rbName = `${fileStamp(new Date(f.root.createdAtMs))}_${f.root.pointId}${FILE_EXTENSIONS.rollback}`;
    rollback = await BackupFileWriter.create(
      join(dir, rbName),
      {
        formatVersion: FORMAT_CURRENT,
        kind: 'rollback',
        blockSize,
        createdAtMs: f.root.createdAtMs,
        fileId: newUuid(),
        chainId: chain.chainId,
        jobId: job.jobId,
        diskSizes: f.root.diskSizes,
      },
      state.storage,
    );
    const rb = rollback;
    let position = f.slot.fileEnd;
    let bytesStored = 0;
    let blocksDeduped = 0;
    let blocksRolledBack = 0;
    const changes = sources.map(() => new Map<number, Change>());
    const byDigest = f.root.tables.map((t) => {
      const m = new Map<string, number>();
      for (let i = 0; i < t.count; i++) m.set(t.digest(i).toString('latin1'), i);
      return m;
    });
    const moveOld = async (d: number, bi: number): Promise<void> => {
      const t = f.root.tables[d]!;
      const slot = t.find(bi, Math.ceil(f.root.diskSizes[d]! / blockSize));
      if (slot < 0 || t.isZero(slot)) {
        rb.addZero(d, bi);
        return;
      }
      // Verified (in a worker of the run's pool) before it moves: a damaged block must not spread into the rollback.
      const checked = await pool.verifyStored(
        await f.readStored(t, slot),
        t.codec(slot),
        Math.min(blockSize, f.root.diskSizes[d]! - bi * blockSize),
        t.digest(slot),
        f.keys,
      );
      if (checked.problem !== null) throw f.blockError(t, slot, checked.problem);
      await rb.addBlock(d, bi, t.codec(slot), checked.stored, t.digest(slot));
      blocksRolledBack += 1;
    };
    const sink: BlockSink = {
      keys: f.keys,
      async addBlock(d, bi, codec, stored, digest) {
        await moveOld(d, bi);
        const t = f.root.tables[d]!;
        const same = byDigest[d]!.get(digest.toString('latin1'));
        if (same !== undefined) {
          changes[d]!.set(bi, { codec: t.codec(same), offset: t.offset(same), length: t.storedLength(same), digest });
          blocksDeduped += 1;
          return;
        }
        await f.handle.write(stored, position);
        changes[d]!.set(bi, { codec, offset: position, length: stored.length, digest });
        position += stored.length;
        bytesStored += stored.length;
      },
      async addZero(d, bi) {
        await moveOld(d, bi);
        changes[d]!.set(bi, null);
      },
    };
    const compression = parseCompression(job.compression);
    const totals = { bytesRead: 0, blocksStored: 0, blocksZero: 0, blocksUnchanged: 0 };
    for (let d = 0; d < sources.length; d++)
      await backupDisk(sources[d]!, d, sources.length, sink, prevDisks[d]!, blockSize, compression, pool, totals, opts.onProgress, opts.signal);

    const tables = f.root.tables.map((t, d) => applyChanges(t, changes[d]!));
    const vm = resolveVmConfig(
      job.name,
      givenVm(job, opened),
      opened.map((o) => ({ path: o.source.path, size: o.source.size, format: o.format })),
    );
    const seq = Math.max(0, ...state.points.map((p) => p.seq)) + 1;
    await rb.commit({
      kind: 'rollback',
      seq: f.root.seq,
      createdAtMs: f.root.createdAtMs,
      pointId: f.root.pointId,
      parentPointId: pointId,
      mergedCount: 0,
      diskSizes: f.root.diskSizes,
      meta: f.root.meta,
    });
    rollback = undefined;
    const { fileEnd } = await commitRoot(
      f.handle,
      {
        kind: 'full',
        seq,
        createdAtMs: now.getTime(),
        pointId,
        parentPointId: null,
        mergedCount: f.root.mergedCount,
        diskSizes: f.root.diskSizes,
        meta: { vm, trigger, changes: trackingOf(opened).map((t) => (t.method === 'full' ? { ...t, method: 'hash' as const } : t)) },
      },
      tables,
      position,
      { slotIndex: f.slotIndex === 0 ? 1 : 0, generation: f.slot.generation + 1 },
      false,
      f.keys,
    );
    // Bytes past the committed end are leftovers of an interrupted run.
    if ((await f.handle.size()) > fileEnd) await f.handle.truncate(fileEnd);
    await Promise.all(opened.map((o) => o.source.close()));
    for (const o of opened) await o.committed();
    opened = [];
    return {
      pointId,
      file: chain.full.name,
      rollback: rbName,
      bytesRead: totals.bytesRead,
      bytesStored,
      blocksStored: totals.blocksStored,
      blocksZero: totals.blocksZero,
      blocksUnchanged: totals.blocksUnchanged,
      blocksDeduped,
      blocksRolledBack,
    };
  } finally {
    if (rollback) await rollback.abort();
    if (pool !== opts.pool) await pool.close();
    await closeAll([...opened.map((o) => o.source.close()), ...prevDisks.map((p) => p.close()), ...(full ? [full.close()] : [])]);
  }
}

/** The full's table at the new point: unchanged entries kept, changed ones replaced, zeroed ones dropped. */
function applyChanges(t: BlockTable, changes: Map<number, Change>): BlockTable {
  const out = new BlockTableBuilder(t.count + changes.size);
  const changed = [...changes.keys()].sort((a, b) => a - b);
  let ci = 0;
  for (let i = 0; i <= t.count; i++) {
    const bi = i < t.count ? t.blockIndex(i) : Infinity;
    while (ci < changed.length && changed[ci]! < bi) {
      const c = changes.get(changed[ci]!)!;
      if (c) out.addData(changed[ci]!, c.codec, c.offset, c.length, c.digest);
      ci += 1;
    }
    if (i === t.count) break;
    if (ci < changed.length && changed[ci] === bi) {
      const c = changes.get(bi)!;
      if (c) out.addData(bi, c.codec, c.offset, c.length, c.digest);
      ci += 1;
    } else if (!t.isZero(i)) out.addRaw(t.raw(i));
  }
  return out.build();
}
