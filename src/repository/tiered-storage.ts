import { rm } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { LifeboatError, fromFsError, isLifeboatError } from '../core/errors.js';
import type { OpenMode, Storage, StorageFile } from '../storage/index.js';
import { ObjectFileStorage, type CollectReport } from '../objects/object-files.js';
import { CAPACITY_RECORD_FILE, readCapacityRecord, writeCapacityRecord } from './capacity-tier.js';

const BACKUP_FILE = /^[^.].*\.(vbk|vib|vrb)$/;

const isMissing = (err: unknown): boolean => isLifeboatError(err, 'LFB_ERR_IO') && err.details['errno'] === 'ENOENT';

/**
 * The storage seam of a scale-out repository: its folder (the performance
 * extent, `local`) and an object store (the capacity extent, `capacity`)
 * seen as one. Only backup files in job folders ever live on the capacity
 * extent, under the same path below its root; every other file (lifeboat.json,
 * job.json, locks, caches) is local alone.
 *
 * A backup file is read from the folder while it is there, else from its copy
 * on the capacity extent if the job's capacity record (capacity.json) names
 * one; a job folder lists the union of both. Writes always go to the folder:
 * a file that is only on the capacity extent cannot be written in place
 * (LFB_ERR_ON_CAPACITY_TIER), and no method writes the sealed chains the
 * tier moves. A stale copy (the local file rewritten since, by a merge or a
 * compact) is never read while the local file exists, and the tier's next run
 * copies it again (it compares size and mtime with the record). Removing a
 * backup file removes both copies. Nothing here decides what to copy or move:
 * that is the tier's run (methods/tier-run.ts).
 */
export class TieredStorage implements Storage {
  private opened: Promise<Storage> | undefined;

  constructor(
    readonly local: Storage,
    /** Opens the capacity extent's storage, at its first use: a backup that never reads a moved file never needs the object store. */
    private readonly openCapacity: () => Promise<Storage>,
    /** The repository's folder. */
    readonly localRoot: string,
    /** The capacity extent's root (s3:/bucket/prefix). */
    readonly capacityRoot: string,
  ) {}

  /** The capacity extent's storage (opened once; a failed opening is tried again at the next use). */
  capacity(): Promise<Storage> {
    if (this.opened === undefined) {
      const opening = this.openCapacity();
      this.opened = opening;
      opening.catch(() => {
        if (this.opened === opening) this.opened = undefined;
      });
    }
    return this.opened;
  }

  /** The path on the capacity extent of a backup file of a job folder; undefined for any other path (local only). */
  capacityPath(path: string): string | undefined {
    const parts = relative(this.localRoot, path).split(sep);
    if (parts.length !== 3 || parts[0] !== 'jobs' || parts[1] === '..' || !BACKUP_FILE.test(parts[2]!)) return undefined;
    return join(this.capacityRoot, ...parts);
  }

  private isJobFolder(dir: string): boolean {
    const parts = relative(this.localRoot, dir).split(sep);
    return parts.length === 2 && parts[0] === 'jobs' && parts[1] !== '..' && parts[1] !== '';
  }

  /** Whether the job's record names a copy of this file on the capacity extent. */
  private async recorded(path: string): Promise<boolean> {
    return Object.hasOwn((await readCapacityRecord(dirname(path), this.local)).files, basename(path));
  }

  async open(path: string, mode: OpenMode): Promise<StorageFile> {
    const far = this.capacityPath(path);
    if (far === undefined) return this.local.open(path, mode);
    if (mode === 'create' || mode === 'replace') return this.local.open(path, mode);
    try {
      return await this.local.open(path, mode);
    } catch (err) {
      if (!isMissing(err) || !(await this.recorded(path))) throw err;
      if (mode === 'write')
        throw new LifeboatError('LFB_ERR_ON_CAPACITY_TIER', `${path} was moved to the capacity tier (${far}); a file there is read, never written in place`, {
          details: { path, capacity: far },
        });
      return (await this.capacity()).open(far, 'read');
    }
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      await this.local.rename(from, to);
    } catch (err) {
      if (isMissing(err) && this.capacityPath(from) !== undefined && (await this.recorded(from)))
        throw new LifeboatError('LFB_ERR_ON_CAPACITY_TIER', `${from} was moved to the capacity tier; it cannot be renamed`, { details: { path: from } });
      throw err;
    }
  }

  /** Removes the file here and its copy on the capacity extent (that copy first: a crash between leaves the local file, which a later removal takes). */
  async remove(path: string): Promise<boolean> {
    const far = this.capacityPath(path);
    let removedFar = false;
    if (far !== undefined) {
      const dir = dirname(path);
      const record = await readCapacityRecord(dir, this.local);
      const name = basename(path);
      if (Object.hasOwn(record.files, name)) {
        removedFar = await (await this.capacity()).remove(far);
        const files = { ...record.files };
        delete files[name];
        await writeCapacityRecord(dir, { files }, this.local);
      }
    }
    const removedHere = await this.local.remove(path);
    return removedHere || removedFar;
  }

  async list(dir: string): Promise<string[]> {
    const here = await this.local.list(dir);
    if (!this.isJobFolder(dir) || !here.includes(CAPACITY_RECORD_FILE)) return here;
    const far = Object.keys((await readCapacityRecord(dir, this.local)).files);
    return [...new Set([...here, ...far])].sort();
  }

  syncDir(dir: string): Promise<void> {
    return this.local.syncDir(dir);
  }

  mkdir(dir: string): Promise<void> {
    return this.local.mkdir(dir);
  }

  /**
   * On an object store: removes the packs no file of the capacity extent names
   * any more (a copy cut off by a kill, a removed copy) once older than the
   * grace (ObjectFileStorage.collect). Undefined for a folder.
   */
  async collectCapacity(graceMs?: number): Promise<CollectReport | undefined> {
    const capacity = await this.capacity();
    return capacity instanceof ObjectFileStorage ? capacity.collect(graceMs) : undefined;
  }

  /** rm -r of a job folder takes the copies its record names on the capacity extent too. */
  async removeFolder(dir: string): Promise<void> {
    if (this.isJobFolder(dir)) {
      const record = await readCapacityRecord(dir, this.local);
      const capacity = Object.keys(record.files).length > 0 ? await this.capacity() : undefined;
      for (const name of Object.keys(record.files)) await capacity!.remove(join(this.capacityRoot, relative(this.localRoot, dir), name));
    }
    if (this.local.removeFolder !== undefined) return this.local.removeFolder(dir);
    await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }).catch((err: unknown) => {
      throw fromFsError(err, 'delete folder', dir);
    });
  }
}
