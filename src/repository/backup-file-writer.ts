import { basename, dirname, join } from 'node:path';
import type { CodecName } from '../format/constants.js';
import { BlockTableBuilder, DATA_START, PAGE, encodeHeader, type FileHeader, type RootInfo } from '../format/index.js';
import { DurableFile, removeDurable, renameDurable, type Storage } from '../storage/index.js';
import { commitRoot } from './commit.js';
import { keysForPath } from '../crypto/keyring.js';
import type { BlockKeys } from '../crypto/seal.js';

/** Bytes written between two background write-backs of a file being written. */
const WRITE_BEHIND_BYTES = 8 * 1024 * 1024;

/** Stored block location, remembered for in-file dedupe. */
interface StoredRef {
  readonly digest: Buffer;
  readonly offset: number;
  readonly length: number;
  readonly codec: CodecName;
}

/**
 * Writes a new backup file under a temporary name. Blocks are appended in
 * block order per disk; a block whose digest was already stored in this file
 * is referenced, not written again. commit() makes it durable and only then
 * gives it its final name: a file with a final name is always complete.
 */
export class BackupFileWriter {
  private position = DATA_START;
  private readonly tables: BlockTableBuilder[];
  private readonly byDigest = new Map<string, StoredRef>();
  private unflushed = 0;
  /** Bytes of block data written (after compression and dedupe). */
  storedBytes = 0;
  dedupedBlocks = 0;

  private constructor(
    readonly finalPath: string,
    readonly tmpPath: string,
    readonly header: FileHeader,
    private readonly file: DurableFile,
    private readonly storage: Storage,
    /** An encrypted repository's keys: blocks come sealed from the pool (or copied sealed), the root is sealed at commit. */
    readonly keys: BlockKeys | undefined,
  ) {
    this.tables = header.diskSizes.map(() => new BlockTableBuilder(256));
  }

  static tmpPathFor(finalPath: string): string {
    return join(dirname(finalPath), `.${basename(finalPath)}.tmp`);
  }

  /** Starts the file under its temporary name in `storage` (the repository's). */
  static async create(finalPath: string, given: FileHeader, storage: Storage): Promise<BackupFileWriter> {
    // A file in an encrypted repository is sealed with its keys, whatever header it was given (compact passes an old file's).
    const keys = keysForPath(finalPath);
    const plain: FileHeader = { ...given, keyId: undefined };
    const header: FileHeader = keys === undefined ? plain : { ...given, keyId: keys.keyId };
    const tmp = BackupFileWriter.tmpPathFor(finalPath);
    const file = await DurableFile.create(tmp, storage);
    const w = new BackupFileWriter(finalPath, tmp, header, file, storage, keys);
    // Header, then two empty slot pages: a file with no valid slot is never a point.
    const pages = Buffer.alloc(DATA_START);
    encodeHeader(header).copy(pages, 0, 0, PAGE);
    try {
      await file.write(pages, 0);
    } catch (err) {
      await w.abort();
      throw err;
    }
    return w;
  }

  /** Appends a stored block (or references an identical one already in this file). */
  async addBlock(disk: number, blockIndex: number, codec: CodecName, stored: Buffer, digest: Buffer): Promise<void> {
    const key = digest.toString('latin1', 0, 16);
    const seen = this.byDigest.get(key);
    if (seen && seen.digest.equals(digest)) {
      this.tables[disk]!.addData(blockIndex, seen.codec, seen.offset, seen.length, digest);
      this.dedupedBlocks += 1;
      return;
    }
    const offset = this.position;
    await this.file.write(stored, offset);
    this.unflushed += stored.length;
    if (this.unflushed >= WRITE_BEHIND_BYTES) {
      // Disk writes overlap the CPU-bound pipeline instead of all waiting for commit's fsync.
      this.file.writeBehind();
      this.unflushed = 0;
    }
    this.position += stored.length;
    this.storedBytes += stored.length;
    this.byDigest.set(key, { digest: Buffer.from(digest), offset, length: stored.length, codec });
    this.tables[disk]!.addData(blockIndex, codec, offset, stored.length, digest);
  }

  /** Records that a block reads as zeros at this point (increments only). */
  addZero(disk: number, blockIndex: number): void {
    this.tables[disk]!.addZero(blockIndex);
  }

  /** Makes the file durable and gives it its final name; returns its size. */
  async commit(info: RootInfo): Promise<{ fileEnd: number }> {
    const { fileEnd } = await commitRoot(
      this.file,
      info,
      this.tables.map((t) => t.build()),
      this.position,
      { slotIndex: 0, generation: 1 },
      true,
      this.keys,
    );
    await this.file.close();
    await renameDurable(this.tmpPath, this.finalPath, this.storage);
    return { fileEnd };
  }

  /** Drops an unfinished file (best effort: what is left is cleaned up by the next run of the job). */
  async abort(): Promise<void> {
    await this.file.close().catch(() => undefined);
    await removeDurable(this.tmpPath, this.storage).catch(() => undefined);
  }
}
