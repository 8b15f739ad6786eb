import { rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { LifeboatError, fromFsError, isLifeboatError } from '../core/errors.js';
import { ObjectFileStorage, type CollectReport } from '../objects/object-files.js';
import { toStorageError } from '../objects/object-file.js';
import type { OpenMode, Storage, StorageFile } from '../storage/index.js';
import {
  CAPACITY_RECORD_FILE,
  STUB_FOLDER,
  copyIsCurrent,
  readCapacityRecord,
  readCapacityTier,
  writeCapacityRecord,
  type CapacityCopy,
  type CapacityTierConfig,
} from './capacity-tier.js';

const BACKUP_FILE = /^[^.].*\.(vbk|vib|vrb)$/;

const isMissing = (err: unknown): boolean => isLifeboatError(err, 'LFB_ERR_IO') && err.details['errno'] === 'ENOENT';

/** The capacity extent of a repository now: its root (as paths inside it are spelled) and its storage. */
export interface CapacityExtent {
  readonly root: string;
  readonly storage: Storage;
  readonly tier: CapacityTierConfig;
}

/**
 * The storage seam of every repository in a folder: the folder (the
 * performance extent, `local`) and, once `tier set` gave it one, a capacity
 * extent on an object store (or another folder) seen as one. Only backup
 * files of job folders ever live on the capacity extent, under the same path
 * below its root; every other file (lifeboat.json, job.json, locks, caches)
 * is local alone. The setting is read when it is needed, so a server started
 * before `tier set` sees moved files too.
 *
 * A backup file is read from the folder while it is there, else from its copy
 * on the capacity extent if the job's record (capacity.json) names one; a job
 * folder lists the union. A moved file keeps a local stub: its header, commit
 * slots and root at their offsets (a sparse file in the job's .capacity
 * folder), so a scan of the job, and the backups that scan it, never need the
 * object store; only reads of its blocks go there. Writes always go to the
 * folder: a moved file cannot be written in place or renamed
 * (LFB_ERR_ON_CAPACITY_TIER). A copy whose local file was rewritten since
 * (a merge, a compact) is never read while the local file exists, and the
 * tier's next run copies it again. Removing a backup file removes both copies.
 * What to copy or move is decided by the tier's run (methods/tier-run.ts).
 */
/** Where a backup file of a repository with a capacity tier is: in the folder, on the capacity extent (moved), or both (copied). */
export type TierPlace = 'local' | 'capacity' | 'both';

/** Where each named backup file of a job folder is, when `storage` is a repository's with a capacity tier; else undefined. */
export async function filePlaces(storage: Storage, dir: string, names: readonly string[]): Promise<Map<string, TierPlace> | undefined> {
  return storage instanceof TieredStorage ? storage.places(dir, names) : undefined;
}

export class TieredStorage implements Storage {
  /** One storage per extent location, opened at its first use (a failed opening is tried again at the next). */
  private readonly opened = new Map<string, Promise<Storage>>();

  constructor(
    readonly local: Storage,
    /** The repository's folder. */
    readonly localRoot: string,
    /** Opens the storage of an extent's location (an s3:/ root through the objects layer, or a folder). */
    private readonly openExtent: (location: string) => Promise<Storage>,
  ) {}

  /** The capacity extent as capacity-tier.json says now; undefined without one. */
  async extent(): Promise<CapacityExtent | undefined> {
    const tier = await readCapacityTier(this.localRoot, this.local);
    if (tier === undefined) return undefined;
    let opening = this.opened.get(tier.location);
    if (opening === undefined) {
      opening = this.openExtent(tier.location);
      this.opened.set(tier.location, opening);
      opening.catch(() => this.opened.delete(tier.location));
    }
    // A store that cannot be opened is the seam's device error, never taken for a damaged file.
    const storage = await opening.catch((err: unknown) => Promise.reject(toStorageError(err, 'open the capacity tier', tier.location)));
    return { root: tier.location, storage, tier };
  }

  /** The extent, or LFB_ERR_NO_CAPACITY_TIER. */
  async requireExtent(): Promise<CapacityExtent> {
    const e = await this.extent();
    if (e === undefined)
      throw new LifeboatError(
        'LFB_ERR_NO_CAPACITY_TIER',
        `${this.localRoot} has no capacity tier; give it one with \`lifeboat tier set --repo ${this.localRoot} --capacity s3://…\``,
        {
          details: { repo: this.localRoot },
        },
      );
    return e;
  }

  /** The path below the repository's root of a backup file of a job folder; undefined for any other path (local only). */
  tierablePath(path: string): string | undefined {
    const parts = relative(this.localRoot, path).split(sep);
    if (parts.length !== 3 || parts[0] !== 'jobs' || parts[1] === '..' || !BACKUP_FILE.test(parts[2]!)) return undefined;
    return parts.join('/');
  }

  private isJobFolder(dir: string): boolean {
    const parts = relative(this.localRoot, dir).split(sep);
    return parts.length === 2 && parts[0] === 'jobs' && parts[1] !== '..' && parts[1] !== '';
  }

  /**
   * Where each named backup file of a job folder is: `local`, `capacity` (moved) or `both` (copied, and the copy
   * is of the file as it is now: a file merged into since its copy is `local` until the next tier run);
   * undefined when the repository has no capacity tier.
   */
  async places(dir: string, names: readonly string[]): Promise<Map<string, TierPlace> | undefined> {
    if ((await readCapacityTier(this.localRoot, this.local)) === undefined) return undefined;
    const here = new Set(await this.local.list(dir));
    const recorded = (await readCapacityRecord(dir, this.local)).files;
    const out = new Map<string, TierPlace>();
    for (const n of names) {
      if (!here.has(n)) out.set(n, 'capacity');
      else if (!Object.hasOwn(recorded, n)) out.set(n, 'local');
      else {
        // Only a recorded file is stat'ed: a repository's other files cost nothing more.
        const st = await stat(join(dir, n)).catch(() => undefined);
        out.set(n, st !== undefined && copyIsCurrent(recorded[n], st) ? 'both' : 'local');
      }
    }
    return out;
  }

  /** Where a moved file's stub is kept in its job folder. */
  static stubPath(path: string): string {
    return join(dirname(path), STUB_FOLDER, basename(path));
  }

  async open(path: string, mode: OpenMode): Promise<StorageFile> {
    if (this.tierablePath(path) === undefined || mode === 'create' || mode === 'replace') return this.local.open(path, mode);
    try {
      return await this.local.open(path, mode);
    } catch (err) {
      if (!isMissing(err)) throw err;
      const copy = (await readCapacityRecord(dirname(path), this.local)).files[basename(path)];
      if (copy === undefined) throw err;
      if (mode === 'write')
        throw new LifeboatError('LFB_ERR_ON_CAPACITY_TIER', `${path} was moved to the capacity tier; a file there is read, never written in place`, {
          details: { path },
        });
      return MovedFile.open(this, path, copy);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      await this.local.rename(from, to);
    } catch (err) {
      if (isMissing(err) && this.tierablePath(from) !== undefined && Object.hasOwn((await readCapacityRecord(dirname(from), this.local)).files, basename(from)))
        throw new LifeboatError('LFB_ERR_ON_CAPACITY_TIER', `${from} was moved to the capacity tier; it cannot be renamed`, { details: { path: from } });
      throw err;
    }
  }

  /**
   * Removes a backup file here and on the capacity extent: its record first
   * (from then on the copy is never read), then the copy and its stub, then
   * the local file. A crash between leaves at worst a copy no record names,
   * which nothing reads.
   */
  async remove(path: string): Promise<boolean> {
    const rel = this.tierablePath(path);
    let removedFar = false;
    if (rel !== undefined) {
      const dir = dirname(path);
      const record = await readCapacityRecord(dir, this.local);
      const name = basename(path);
      if (Object.hasOwn(record.files, name)) {
        const files = { ...record.files };
        delete files[name];
        await writeCapacityRecord(dir, { files }, this.local);
        const extent = await this.extent();
        if (extent !== undefined) removedFar = await extent.storage.remove(join(extent.root, rel));
        await this.local.remove(TieredStorage.stubPath(path));
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
   * grace (ObjectFileStorage.collect). Undefined for a folder or without a tier.
   */
  async collectCapacity(graceMs?: number): Promise<CollectReport | undefined> {
    const extent = await this.extent();
    return extent?.storage instanceof ObjectFileStorage ? extent.storage.collect(graceMs) : undefined;
  }

  /** Removes what the capacity extent holds of a job folder (its copies, job.json, partial copies): before the job's own files go. */
  async removeCapacityFolder(dir: string): Promise<void> {
    if (!this.isJobFolder(dir)) return;
    const extent = await this.extent();
    if (extent === undefined) return;
    const far = join(extent.root, relative(this.localRoot, dir));
    if (extent.storage.removeFolder !== undefined) await extent.storage.removeFolder(far);
    else await rm(far, { recursive: true, force: true }).catch((err: unknown) => Promise.reject(fromFsError(err, 'delete folder', far)));
    await writeCapacityRecord(dir, { files: {} }, this.local);
  }

  /** rm -r of a folder; a job folder's copies on the capacity extent go first. */
  async removeFolder(dir: string): Promise<void> {
    await this.removeCapacityFolder(dir);
    if (this.local.removeFolder !== undefined) return this.local.removeFolder(dir);
    await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }).catch((err: unknown) => {
      throw fromFsError(err, 'delete folder', dir);
    });
  }
}

/**
 * A moved backup file, read only: reads that fall inside its stub's ranges
 * (header, commit slots, root) come from the local stub; any other read, and
 * every read when the stub is gone, from the copy on the capacity extent,
 * opened at the first such read. A copy the record names but the extent has
 * not is LFB_ERR_TIER_MISMATCH (the file is listed as damaged, its points
 * unavailable), never a file silently gone.
 */
class MovedFile implements StorageFile {
  private far: Promise<StorageFile> | undefined;

  private constructor(
    readonly path: string,
    private readonly tiered: TieredStorage,
    private readonly copy: CapacityCopy,
    private readonly stub: StorageFile | undefined,
  ) {}

  static async open(tiered: TieredStorage, path: string, copy: CapacityCopy): Promise<MovedFile> {
    const stub =
      copy.stub === undefined
        ? undefined
        : await tiered.local.open(TieredStorage.stubPath(path), 'read').catch((err: unknown) => {
            if (isMissing(err)) return undefined;
            throw err;
          });
    return new MovedFile(path, tiered, copy, stub);
  }

  private farFile(): Promise<StorageFile> {
    this.far ??= (async () => {
      const extent = await this.tiered.requireExtent();
      const farPath = join(extent.root, this.tiered.tierablePath(this.path)!);
      try {
        return await extent.storage.open(farPath, 'read');
      } catch (err) {
        if (!isMissing(err)) throw toStorageError(err, 'open', farPath);
        throw new LifeboatError(
          'LFB_ERR_TIER_MISMATCH',
          `${this.path} was moved to the capacity tier, which has no copy of it (${farPath}); its points cannot be read`,
          {
            details: { path: this.path, capacity: farPath },
          },
        );
      }
    })();
    const opening = this.far;
    opening.catch(() => {
      if (this.far === opening) this.far = undefined;
    });
    return opening;
  }

  private inStub(position: number, length: number): boolean {
    return this.stub !== undefined && (this.copy.stub ?? []).some(([at, n]) => position >= at && position + length <= at + n);
  }

  async pread(into: Buffer, position: number): Promise<number> {
    const wanted = Math.max(0, Math.min(into.length, this.copy.size - position));
    if (wanted === 0) return 0;
    if (this.inStub(position, wanted)) return this.stub!.pread(into.subarray(0, wanted), position);
    return (await this.farFile()).pread(into, position);
  }

  private refuse(doing: string): never {
    throw new LifeboatError('LFB_ERR_ON_CAPACITY_TIER', `${this.path} is on the capacity tier; it cannot be ${doing}`, { details: { path: this.path } });
  }

  async pwrite(): Promise<void> {
    this.refuse('written');
  }

  async truncate(): Promise<void> {
    this.refuse('truncated');
  }

  async sync(): Promise<void> {}

  async datasync(): Promise<void> {}

  async size(): Promise<number> {
    return this.copy.size;
  }

  async close(): Promise<void> {
    await this.stub?.close();
    const far = this.far;
    this.far = undefined;
    if (far !== undefined) await far.then((f) => f.close()).catch(() => undefined);
  }
}
