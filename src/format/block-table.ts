import { CODECS, ENTRY_FLAG_ZERO, ENTRY_SIZE, type CodecName } from './constants.js';
import { DIGEST_SIZE } from './checksum.js';

/**
 * The block table of one disk in one backup file: entries sorted by block
 * index, one per block the file holds. A block absent from a full reads as
 * zeros; absent from an increment, it is unchanged from the parent point.
 *
 * Entry layout (56 bytes, little endian):
 *   0 u32 blockIndex · 4 u8 flags (1 = zero) · 5 u8 codec · 6 u16 reserved
 *   8 u32 storedLength · 12 u32 reserved · 16 u64 offset · 24 [32] sha256 of the
 *   uncompressed block
 * Entries stay in one Buffer (no object per block), so a 2 TiB disk costs
 * 56 bytes per stored block and 4 bytes per block for the dense index.
 */
export class BlockTable {
  readonly count: number;
  private dense: Int32Array | undefined;

  constructor(readonly entries: Buffer) {
    this.count = entries.length / ENTRY_SIZE;
  }

  static empty(): BlockTable {
    return new BlockTable(Buffer.alloc(0));
  }

  blockIndex(i: number): number {
    return this.entries.readUInt32LE(i * ENTRY_SIZE);
  }
  isZero(i: number): boolean {
    return (this.entries[i * ENTRY_SIZE + 4]! & ENTRY_FLAG_ZERO) !== 0;
  }
  codec(i: number): CodecName {
    return CODECS[this.entries[i * ENTRY_SIZE + 5]!] ?? 'none';
  }
  codecId(i: number): number {
    return this.entries[i * ENTRY_SIZE + 5]!;
  }
  storedLength(i: number): number {
    return this.entries.readUInt32LE(i * ENTRY_SIZE + 8);
  }
  offset(i: number): number {
    return Number(this.entries.readBigUInt64LE(i * ENTRY_SIZE + 16));
  }
  digest(i: number): Buffer {
    const at = i * ENTRY_SIZE + 24;
    return this.entries.subarray(at, at + DIGEST_SIZE);
  }
  /** The raw 56 bytes of entry i (for copying an entry unchanged into another table). */
  raw(i: number): Buffer {
    return this.entries.subarray(i * ENTRY_SIZE, (i + 1) * ENTRY_SIZE);
  }

  /** Entry slot of a block, or -1. O(1) after a one-time O(entries) index build. */
  find(blockIndex: number, blockCount: number): number {
    if (this.dense === undefined) {
      const d = new Int32Array(blockCount).fill(-1);
      for (let i = 0; i < this.count; i++) {
        const bi = this.blockIndex(i);
        if (bi < blockCount) d[bi] = i;
      }
      this.dense = d;
    }
    return blockIndex < this.dense.length ? this.dense[blockIndex]! : -1;
  }

  /** Checks the invariants a decoder must not trust blindly. Returns a problem or undefined. */
  validate(blockCount: number, dataStart: number, dataEnd: number): string | undefined {
    let prev = -1;
    for (let i = 0; i < this.count; i++) {
      const bi = this.blockIndex(i);
      if (bi <= prev) return `entry ${i}: block index ${bi} out of order`;
      if (bi >= blockCount) return `entry ${i}: block index ${bi} beyond the disk (${blockCount} blocks)`;
      prev = bi;
      if (this.isZero(i)) continue;
      if (this.codecId(i) >= CODECS.length) return `entry ${i}: unknown codec ${this.codecId(i)}`;
      const off = this.offset(i);
      const len = this.storedLength(i);
      if (len === 0 || off < dataStart || off + len > dataEnd) return `entry ${i}: block ${bi} at ${off}+${len} lies outside the data area`;
    }
    return undefined;
  }
}

/** Appends entries in increasing block order. */
export class BlockTableBuilder {
  private buf: Buffer;
  private n = 0;
  private last = -1;

  constructor(initialEntries = 64) {
    this.buf = Buffer.alloc(Math.max(1, initialEntries) * ENTRY_SIZE);
  }

  get count(): number {
    return this.n;
  }

  private slotFor(blockIndex: number): number {
    if (blockIndex <= this.last) throw new RangeError(`block ${blockIndex} added after ${this.last}`);
    this.last = blockIndex;
    if ((this.n + 1) * ENTRY_SIZE > this.buf.length) {
      const bigger = Buffer.alloc(this.buf.length * 2);
      this.buf.copy(bigger);
      this.buf = bigger;
    }
    const at = this.n * ENTRY_SIZE;
    this.n += 1;
    return at;
  }

  addData(blockIndex: number, codec: CodecName, offset: number, storedLength: number, digest: Buffer): void {
    const at = this.slotFor(blockIndex);
    this.buf.fill(0, at, at + ENTRY_SIZE);
    this.buf.writeUInt32LE(blockIndex, at);
    this.buf[at + 5] = CODECS.indexOf(codec);
    this.buf.writeUInt32LE(storedLength, at + 8);
    this.buf.writeBigUInt64LE(BigInt(offset), at + 16);
    digest.copy(this.buf, at + 24);
  }

  addZero(blockIndex: number): void {
    const at = this.slotFor(blockIndex);
    this.buf.fill(0, at, at + ENTRY_SIZE);
    this.buf.writeUInt32LE(blockIndex, at);
    this.buf[at + 4] = ENTRY_FLAG_ZERO;
  }

  /** Copies an entry from another table, unchanged (same file: offsets stay valid). */
  addRaw(raw: Buffer): void {
    const at = this.slotFor(raw.readUInt32LE(0));
    raw.copy(this.buf, at, 0, ENTRY_SIZE);
  }

  build(): BlockTable {
    return new BlockTable(Buffer.from(this.buf.subarray(0, this.n * ENTRY_SIZE)));
  }
}
