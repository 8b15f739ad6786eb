import { basename } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { verifyingDecode } from '../compress/codec.js';
import {
  type BlockTable,
  DATA_START,
  PAGE,
  SLOT_OFFSETS,
  decodeHeader,
  decodeRoot,
  decodeSlot,
  pickSlot,
  rootDigest,
  type FileHeader,
  type Root,
  type Slot,
} from '../format/index.js';
import { DurableFile, localStorage, type Storage } from '../storage/index.js';
import { openBytes, type BlockKeys } from '../crypto/seal.js';
import { keysFor } from '../crypto/keyring.js';
import { ROOT_AAD } from './commit.js';

/**
 * A backup file opened for reading at its committed root. Opening reads the
 * header, the two slots and the root: time in proportion to the block map,
 * never to the data.
 */
export class BackupFileReader {
  private constructor(
    readonly path: string,
    readonly header: FileHeader,
    readonly slot: Slot,
    readonly slotIndex: 0 | 1,
    readonly root: Root,
    private readonly file: DurableFile,
    /** A sealed file's keys (its header names them); undefined for a plain file. */
    readonly keys: BlockKeys | undefined,
  ) {}

  get name(): string {
    return basename(this.path);
  }

  /** Opens the file in `storage` (the repository's; the local file system by default). */
  static async open(path: string, opts: { writable?: boolean; storage?: Storage } = {}): Promise<BackupFileReader> {
    const storage = opts.storage ?? localStorage;
    const file = opts.writable ? await DurableFile.openReadWrite(path, storage) : await DurableFile.openRead(path, storage);
    try {
      return await BackupFileReader.load(path, file);
    } catch (err) {
      await file.close().catch(() => undefined);
      throw err;
    }
  }

  private static async load(path: string, file: DurableFile): Promise<BackupFileReader> {
    const name = basename(path);
    const size = await file.size();
    const pages = Buffer.alloc(DATA_START);
    const got = await file.read(pages, 0);
    if (got < DATA_START) {
      throw new LifeboatError('LFB_ERR_FILE_TRUNCATED', `${name}: file is ${size} bytes, shorter than its header and commit slots; the file is truncated`, {
        details: { file: name, size },
      });
    }
    const header = decodeHeader(pages.subarray(0, PAGE), name);
    const a = decodeSlot(pages.subarray(SLOT_OFFSETS[0], SLOT_OFFSETS[0] + PAGE));
    const b = decodeSlot(pages.subarray(SLOT_OFFSETS[1], SLOT_OFFSETS[1] + PAGE));
    const picked = pickSlot(a, b);
    if (!picked) {
      throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${name}: no valid commit slot; the file was never completed or is damaged`, { details: { file: name } });
    }
    const { slot } = picked;
    if (slot.fileEnd > size) {
      throw new LifeboatError(
        'LFB_ERR_FILE_TRUNCATED',
        `${name}: file is ${size} bytes but its committed content ends at ${slot.fileEnd}; the file is truncated`,
        { details: { file: name, size, expected: slot.fileEnd } },
      );
    }
    if (slot.rootOffset < DATA_START || slot.rootOffset + slot.rootLength > slot.fileEnd) {
      throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${name}: commit slot points outside the file`, { details: { file: name } });
    }
    const rootBytes = Buffer.alloc(slot.rootLength);
    await file.read(rootBytes, slot.rootOffset);
    if (!rootDigest(rootBytes).equals(slot.rootDigest)) {
      throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${name}: metadata root at offset ${slot.rootOffset} fails its checksum; the file is damaged`, {
        details: { file: name, offset: slot.rootOffset },
      });
    }
    const keys = header.keyId === undefined ? undefined : keysFor(header.keyId, name);
    let plainRoot: Buffer = rootBytes;
    if (keys !== undefined) {
      const opened = openBytes(keys.seal, rootBytes, ROOT_AAD);
      if (opened === null)
        throw new LifeboatError(
          'LFB_ERR_FILE_CORRUPT',
          `${name}: sealed metadata root at offset ${slot.rootOffset} fails its authentication tag; the file is damaged`,
          {
            details: { file: name, offset: slot.rootOffset },
          },
        );
      plainRoot = opened;
    }
    const root = decodeRoot(plainRoot, name);
    if (root.tables.length !== header.diskSizes.length) {
      throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${name}: root lists ${root.tables.length} disks, header ${header.diskSizes.length}`, {
        details: { file: name },
      });
    }
    root.tables.forEach((t, d) => {
      const blockCount = Math.ceil(root.diskSizes[d]! / header.blockSize);
      const problem = t.validate(blockCount, DATA_START, slot.rootOffset);
      if (problem) throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${name}: disk ${d} block table: ${problem}`, { details: { file: name, disk: d } });
    });
    return new BackupFileReader(path, header, slot, picked.index, root, file, keys);
  }

  /** The stored (compressed) bytes of entry `slot` of disk `disk`'s table. */
  async readStored(table: BlockTable, slot: number): Promise<Buffer> {
    return this.readStoredPart(table, slot, 0, table.storedLength(slot));
  }

  /**
   * `length` stored bytes of entry `slot`, from `from` bytes into it (the
   * frames a small read needs). In a buffer with its own ArrayBuffer, never a
   * slice of Node's shared pool: it is transferred to a worker as it is.
   */
  async readStoredPart(table: BlockTable, slot: number, from: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafeSlow(length);
    const got = await this.file.read(buf, table.offset(slot) + from);
    if (got !== length) throw this.blockError(table, slot, `cannot be read: only ${got} of ${length} bytes are in the file`);
    return buf;
  }

  /** Reads, decompresses and checks one block. Never returns bytes that fail their checksum. */
  async readBlock(disk: number, slot: number, rawLength: number): Promise<Buffer> {
    const table = this.root.tables[disk]!;
    const stored = await this.readStored(table, slot);
    return this.decodeStored(table, slot, stored, rawLength);
  }

  decodeStored(table: BlockTable, slot: number, stored: Buffer, rawLength: number): Buffer {
    const r = verifyingDecode(table.codec(slot), stored, rawLength, table.digest(slot), false, this.keys);
    if (r.data === null) throw this.blockError(table, slot, r.problem);
    return r.data;
  }

  blockError(table: BlockTable, slot: number, what: string): LifeboatError {
    const block = table.blockIndex(slot);
    const offset = table.offset(slot);
    const disk = this.root.tables.indexOf(table);
    return new LifeboatError(
      'LFB_ERR_BLOCK_CORRUPT',
      `${this.name}: disk ${disk} block ${block} (file offset ${offset}) ${what}; this restore point cannot be read bit-exact from this file`,
      {
        details: { file: this.name, disk, block, offset },
      },
    );
  }

  /** The underlying file, for the in-place updater. */
  get handle(): DurableFile {
    return this.file;
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}
