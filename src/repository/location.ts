import { join, resolve } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { ObjectFileStorage, objectStoreHostDir, type FolderFile } from '../objects/object-files.js';
import { formatS3Url, parseS3Url } from '../objects/s3-config.js';
import { localStorage, type Storage } from '../storage/index.js';
import { TieredStorage } from './tiered-storage.js';

/**
 * Where a repository is: a folder, or `s3://bucket/prefix` (one accepted
 * as `s3:/bucket/prefix` too: that is the form path.join gives it, and so the
 * form of every path inside it). A repository on S3 keeps its files through
 * ObjectFileStorage: packs and create-only roots, never an overwritten object.
 */
export interface RepositoryLocation {
  /** The repository's root: every path of its files is join(root, …). */
  readonly root: string;
  readonly storage: Storage;
}

const S3_ROOT = /^s3:\/\/?/;

export function isObjectLocation(text: string): boolean {
  return S3_ROOT.test(text);
}

/** The root a location has, as stored in catalogs and job definitions: a resolved folder, or s3:/bucket/prefix. */
export function repositoryRoot(text: string): string {
  return isObjectLocation(text) ? join(text.replace(S3_ROOT, 's3:/')).replace(/\/+$/, '') : resolve(text);
}

/** A root as a user writes it: s3://bucket/prefix for one on S3. */
export function locationText(root: string): string {
  return isObjectLocation(root) ? `s3://${root.replace(S3_ROOT, '')}` : root;
}

/**
 * The root of a repository that must be a folder (sandboxes and SureBackup keep their labs in folders next to the
 * repository's files): one on object storage is refused with LFB_ERR_STORE_UNSUPPORTED.
 */
export function folderRepositoryRoot(text: string, command: string): string {
  if (isObjectLocation(text))
    throw new LifeboatError(
      'LFB_ERR_STORE_UNSUPPORTED',
      `${command} needs a repository in a folder; ${locationText(repositoryRoot(text))} is on object storage, where backup, restore, verify, compact, retention, the job commands and serve (instant and file-level recovery) work, but not ${command} yet`,
      { details: { repo: text, command } },
    );
  return resolve(text);
}

/**
 * The folder of this host where a repository's host side lives (an
 * instant-recovery server's lock, control file, sessions and caches): the
 * repository's own folder, or for one on object storage its store's host
 * folder (objectStoreHostDir, under $LIFEBOAT_STATE_DIR). A pure function of
 * the text, so a command finds a server's control file without opening the
 * store.
 */
export function repositoryHostRoot(text: string): string {
  const root = repositoryRoot(text);
  return isObjectLocation(root) ? objectStoreHostDir(formatS3Url(parseS3Url(locationText(root)))) : root;
}

/** One store per bucket and prefix for the process: opening one asks the bucket how it keeps versions. */
const stores = new Map<string, Promise<ObjectFileStorage>>();

/**
 * The repository's root and storage. `objectLock`: a bucket made now gets object lock (an immutable repository), and
 * an existing one without it is refused (LFB_ERR_IMMUTABLE_UNSUPPORTED: S3 enables it only at a bucket's creation).
 */
export async function openLocation(text: string, storage?: Storage, opts: { objectLock?: boolean } = {}): Promise<RepositoryLocation> {
  const root = repositoryRoot(text);
  if (storage !== undefined) return { root, storage };
  if (!isObjectLocation(text)) {
    // Every folder repository may have a capacity extent (capacity-tier.json, read when needed): its folder and that extent as one storage.
    return {
      root,
      storage: new TieredStorage(localStorage, root, async (location) => (isObjectLocation(location) ? (await openLocation(location)).storage : localStorage)),
    };
  }
  const key = `${root}${opts.objectLock === true ? ' (object lock)' : ''}`;
  let opened = stores.get(key);
  if (opened === undefined) {
    const url = `s3://${root.slice('s3:/'.length)}`;
    // The S3 client (the AWS SDK: about 60 ms of module loading) is loaded only by a process that opens a repository on S3.
    opened = import('../objects/s3-object-store.js')
      .then(({ S3ObjectStore }) => S3ObjectStore.open(url, opts.objectLock === true ? { objectLock: true } : {}))
      .then((store) => new ObjectFileStorage(store, root));
    stores.set(key, opened);
    opened.catch(() => stores.delete(key));
  }
  return { root, storage: await opened };
}

export type { FolderFile } from '../objects/object-files.js';

/**
 * The files directly in a folder of a repository on object storage, each with
 * its latest committed generation and size, from one listing
 * (ObjectFileStorage.folderFiles): what a job folder's signature is made of there.
 */
export async function objectFolderFiles(root: string, dir: string, wanted?: (name: string) => boolean): Promise<FolderFile[]> {
  const { storage } = await openLocation(root);
  if (!(storage instanceof ObjectFileStorage)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${root} is not on object storage`);
  return storage.folderFiles(dir, wanted);
}
