import { LifeboatError } from '../core/errors.js';
import { BlockTableBuilder, type BlockTable, type RootInfo } from '../format/index.js';
import { localStorage, removeDurable, type Storage } from '../storage/index.js';
import { BackupFileReader } from '../repository/backup-file.js';
import { commitRoot } from '../repository/commit.js';
import type { Chain } from '../repository/job-state.js';
import { refuseSealedJob } from '../repository/immutability.js';
import { dirname } from 'node:path';
import { BlockWorkerPool } from '../compress/block-pool.js';
import { copyVerified, type CopyStep } from './verified-copy.js';

export interface MergeResult {
  readonly mergedPointId: string;
  readonly blocksCopied: number;
  readonly blocksReferenced: number;
  readonly bytesCopied: number;
}

/**
 * Forever-forward merge: injects the oldest increment of `chain` into its full,
 * in place, then deletes the increment.
 *
 * Cost is in proportion to the increment: its stored blocks are copied as
 * they are (no recompression; each verified in a worker: copyVerified) and appended after the full's committed end;
 * the full's root is rewritten (metadata only). Blocks the full already holds
 * with the same digest are referenced, not copied. Crash safety comes from
 * the commit protocol: until the new slot is written the old root, and every
 * byte it references, is untouched; after it, the increment is redundant and
 * the next scan deletes it if we die before doing so.
 */
export async function mergeOldestIncrement(chain: Chain, storage: Storage = localStorage, opts: { pool?: BlockWorkerPool } = {}): Promise<MergeResult> {
  const incFile = chain.increments[0];
  if (incFile === undefined) throw new LifeboatError('LFB_ERR_INTERNAL', `chain ${chain.chainId} has no increment to merge`);
  await refuseSealedJob(dirname(chain.full.path), storage, 'a forever-forward merge');
  const full = await BackupFileReader.open(chain.full.path, { writable: true, storage });
  const inc = await BackupFileReader.open(incFile.path, { storage }).catch(async (err: unknown) => {
    await full.close().catch(() => undefined);
    throw err;
  });
  const pool = opts.pool ?? new BlockWorkerPool();
  try {
    if (inc.root.parentPointId !== full.root.pointId) {
      throw new LifeboatError('LFB_ERR_CHAIN_BROKEN', `${inc.name} is not the next point after ${full.name}; refusing to merge`);
    }
    const blockSize = full.header.blockSize;
    let position = full.slot.fileEnd;
    let blocksCopied = 0;
    let blocksReferenced = 0;
    let bytesCopied = 0;
    const tables: BlockTable[] = [];

    for (let d = 0; d < inc.root.diskSizes.length; d++) {
      const size = inc.root.diskSizes[d]!;
      const blockCount = Math.ceil(size / blockSize);
      const ft = full.root.tables[d]!;
      const it = inc.root.tables[d]!;
      // Digest → slot of blocks the full references now, for dedupe.
      const byDigest = new Map<string, number>();
      for (let i = 0; i < ft.count; i++) byDigest.set(ft.digest(i).toString('latin1'), i);
      const out = new BlockTableBuilder(ft.count + it.count);
      const rawLength = (ib: number): number => Math.min(blockSize, size - ib * blockSize);
      // The merged table in block order: the full's entries, the increment's where it has one (its zeros drop out),
      // blocks the full already holds referenced; only the others are copied (verified in a worker first, so a merge
      // never spreads a damaged block into the full).
      const steps = function* (): Iterable<CopyStep<MergeStep>> {
        let fi = 0;
        let ii = 0;
        while (fi < ft.count || ii < it.count) {
          const fb = fi < ft.count ? ft.blockIndex(fi) : Infinity;
          const ib = ii < it.count ? it.blockIndex(ii) : Infinity;
          if (fb < ib) {
            if (fb < blockCount) yield { tag: { kind: 'keep', slot: fi } };
            fi += 1;
            continue;
          }
          // The increment's version of this block wins.
          if (fb === ib) fi += 1;
          const slot = ii;
          ii += 1;
          if (ib >= blockCount || it.isZero(slot)) continue; // zeros: absent from a full
          const same = byDigest.get(it.digest(slot).toString('latin1'));
          if (same !== undefined) yield { tag: { kind: 'reference', block: ib, slot, same } };
          else yield { copy: { file: inc, table: it, slot, rawLength: rawLength(ib) }, tag: { kind: 'copy', block: ib, slot } };
        }
      };
      await copyVerified(pool, steps(), async (step, block) => {
        if (step.kind === 'keep') out.addRaw(ft.raw(step.slot));
        else if (step.kind === 'reference') {
          out.addData(step.block, ft.codec(step.same), ft.offset(step.same), ft.storedLength(step.same), it.digest(step.slot));
          blocksReferenced += 1;
        } else {
          await full.handle.write(block!.stored, position);
          out.addData(step.block, block!.codec, position, block!.stored.length, block!.digest);
          position += block!.stored.length;
          blocksCopied += 1;
          bytesCopied += block!.stored.length;
        }
      });
      tables.push(out.build());
    }

    const info: RootInfo = {
      kind: 'full',
      seq: inc.root.seq,
      createdAtMs: inc.root.createdAtMs,
      pointId: inc.root.pointId,
      parentPointId: null,
      mergedCount: full.root.mergedCount + 1,
      diskSizes: inc.root.diskSizes,
      meta: { ...inc.root.meta, mergedPointIds: [...(full.root.meta.mergedPointIds ?? []), inc.root.pointId] },
    };
    // Data first (fsynced inside commitRoot together with the root), then the slot.
    const { fileEnd } = await commitRoot(
      full.handle,
      info,
      tables,
      position,
      {
        slotIndex: full.slotIndex === 0 ? 1 : 0,
        generation: full.slot.generation + 1,
      },
      false,
      full.keys,
    );
    // Bytes past the committed end are leftovers of an interrupted merge.
    if ((await full.handle.size()) > fileEnd) await full.handle.truncate(fileEnd);
    await full.close();
    await inc.close();
    await removeDurable(inc.path, storage);
    return { mergedPointId: inc.root.pointId, blocksCopied, blocksReferenced, bytesCopied };
  } catch (err) {
    await full.close().catch(() => undefined);
    await inc.close().catch(() => undefined);
    throw err;
  } finally {
    if (pool !== opts.pool) await pool.close();
  }
}

/** What the merged table gets at each step: the full's entry, a reference to a block the full holds, or a copied block. */
type MergeStep =
  | { readonly kind: 'keep'; readonly slot: number }
  | { readonly kind: 'reference'; readonly block: number; readonly slot: number; readonly same: number }
  | { readonly kind: 'copy'; readonly block: number; readonly slot: number };
