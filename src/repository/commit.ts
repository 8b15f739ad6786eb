import { SLOT_OFFSETS, encodeRoot, encodeSlot, rootDigest, type BlockTable, type RootInfo } from '../format/index.js';
import type { DurableFile } from '../storage/index.js';
import { sealBytes, type BlockKeys } from '../crypto/seal.js';

/** The associated data of a sealed root: a root's bytes can never pass for a block's. */
export const ROOT_AAD = Buffer.from('lifeboat-root-v1');

/**
 * The one commit protocol of backup files (docs/format.md §Commit):
 *   1. data is already written past the committed end,
 *   2. the new root is written after it, and the file is fsynced,
 *   3. the slot the current root is NOT in gets generation + 1, fsync.
 * A crash before step 3 completes leaves the previous root in force; nothing
 * it references was overwritten.
 */
export async function commitRoot(
  file: DurableFile,
  info: RootInfo,
  tables: readonly BlockTable[],
  rootOffset: number,
  next: { slotIndex: 0 | 1; generation: number },
  /**
   * The file is still under its temporary name: nothing reads it before it is
   * renamed, so root and slot go down with one fsync (before the rename).
   */
  unpublished = false,
  /** A sealed file: the root (block tables, VM configuration) is sealed; the slot's SHA-256 is of the sealed bytes. */
  keys?: BlockKeys,
): Promise<{ fileEnd: number }> {
  const plain = encodeRoot(info, tables);
  const root = keys === undefined ? plain : sealBytes(keys.seal, plain, ROOT_AAD);
  await file.write(root, rootOffset);
  if (!unpublished) await file.sync();
  const fileEnd = rootOffset + root.length;
  const slot = encodeSlot({ generation: next.generation, rootOffset, rootLength: root.length, fileEnd, rootDigest: rootDigest(root) });
  await file.write(slot, SLOT_OFFSETS[next.slotIndex]);
  await file.sync();
  return { fileEnd };
}
