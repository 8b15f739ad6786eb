import { LifeboatError } from '../core/errors.js';
import type { Storage } from '../storage/index.js';
import { BackupFileReader } from './backup-file.js';
import type { ChainFile } from './job-state.js';

/**
 * Where each block of one disk of a restore point is stored in its chain:
 * the file (layer) and the slot of its table, 6 bytes a block, built from the
 * block tables of the chain's files — time in proportion to the block map,
 * never to the data.
 */
export class ChainBlockMap {
  readonly size: number;
  readonly blockSize: number;
  readonly blockCount: number;
  /** 0 = zeros; k = layers[k-1]. */
  readonly layerOf: Uint16Array;
  readonly slotOf: Int32Array;

  private constructor(
    /** The chain's files, full first, open. */
    readonly layers: readonly BackupFileReader[],
    readonly disk: number,
  ) {
    const top = layers[layers.length - 1]!;
    this.blockSize = top.header.blockSize;
    this.size = top.root.diskSizes[disk]!;
    this.blockCount = Math.ceil(this.size / this.blockSize);
    this.layerOf = new Uint16Array(this.blockCount);
    this.slotOf = new Int32Array(this.blockCount);
    layers.forEach((layer, li) => {
      const t = layer.root.tables[disk]!;
      for (let i = 0; i < t.count; i++) {
        const bi = t.blockIndex(i);
        if (bi >= this.blockCount) continue;
        this.layerOf[bi] = t.isZero(i) ? 0 : li + 1;
        this.slotOf[bi] = i;
      }
    });
  }

  /** Opens the files of a point (full first) and maps disk `disk`; the files are closed again if that fails. */
  static async open(files: readonly ChainFile[], disk: number, storage: Storage | undefined): Promise<ChainBlockMap> {
    const layers: BackupFileReader[] = [];
    try {
      for (const f of files) layers.push(await BackupFileReader.open(f.path, storage ? { storage } : {}));
    } catch (err) {
      await Promise.all(layers.map((l) => l.close()));
      throw err;
    }
    const bs = layers[0]!.header.blockSize;
    const top = layers[layers.length - 1]!;
    const problem = layers.find((l) => l.header.blockSize !== bs)
      ? 'files of one chain disagree on the block size'
      : disk < 0 || disk >= top.root.diskSizes.length
        ? `the point has ${top.root.diskSizes.length} disk(s), no disk ${disk}`
        : undefined;
    if (problem) {
      await Promise.all(layers.map((l) => l.close()));
      throw new LifeboatError(problem.startsWith('the point') ? 'LFB_ERR_DISK_NOT_FOUND' : 'LFB_ERR_CHAIN_BROKEN', problem);
    }
    return new ChainBlockMap(layers, disk);
  }

  rawLength(blockIndex: number): number {
    return Math.min(this.blockSize, this.size - blockIndex * this.blockSize);
  }

  /** Allocation by block: blocks the point stores are data, the others holes. */
  extents(offset: number, length: number): { length: number; hole: boolean }[] {
    const out: { length: number; hole: boolean }[] = [];
    let pos = offset;
    const end = Math.min(offset + length, this.size);
    while (pos < end) {
      const bi = Math.floor(pos / this.blockSize);
      const to = Math.min(end, (bi + 1) * this.blockSize);
      const hole = this.layerOf[bi] === 0;
      const last = out[out.length - 1];
      if (last && last.hole === hole) last.length += to - pos;
      else out.push({ length: to - pos, hole });
      pos = to;
    }
    return out;
  }

  *allocatedBlocks(): Iterable<number> {
    for (let i = 0; i < this.blockCount; i++) if (this.layerOf[i] !== 0) yield i;
  }

  /** Where a block's stored bytes are at this point (file and table slot), or undefined for zeros. */
  storedBlock(blockIndex: number): { readonly file: BackupFileReader; readonly slot: number } | undefined {
    const l = blockIndex < this.blockCount ? this.layerOf[blockIndex]! : 0;
    return l === 0 ? undefined : { file: this.layers[l - 1]!, slot: this.slotOf[blockIndex]! };
  }

  /** The digest of a block at this point, or null if it reads as zeros. */
  digestOf(blockIndex: number): Buffer | null {
    const l = blockIndex < this.blockCount ? this.layerOf[blockIndex]! : 0;
    if (l === 0) return null;
    return this.layers[l - 1]!.root.tables[this.disk]!.digest(this.slotOf[blockIndex]!);
  }

  async close(): Promise<void> {
    await Promise.all(this.layers.map((l) => l.close()));
  }
}
