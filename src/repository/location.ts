import { join, resolve } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import { ObjectFileStorage } from '../objects/object-files.js';
import { localStorage, type Storage } from '../storage/index.js';

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
 * The root of a repository that must be a folder (instant recovery, file-level recovery and sandboxes serve from
 * folders next to the repository's files): one on object storage is refused with LFB_ERR_STORE_UNSUPPORTED.
 */
export function folderRepositoryRoot(text: string, command: string): string {
  if (isObjectLocation(text))
    throw new LifeboatError(
      'LFB_ERR_STORE_UNSUPPORTED',
      `${command} needs a repository in a folder; ${locationText(repositoryRoot(text))} is on object storage, where backup, restore, verify, compact, retention and the job commands work, but not ${command} yet`,
      { details: { repo: text, command } },
    );
  return resolve(text);
}

/** One store per bucket and prefix for the process: opening one asks the bucket how it keeps versions. */
const stores = new Map<string, Promise<ObjectFileStorage>>();

/**
 * The repository's root and storage. `objectLock`: a bucket made now gets object lock (an immutable repository), and
 * an existing one without it is refused (LFB_ERR_IMMUTABLE_UNSUPPORTED: S3 enables it only at a bucket's creation).
 */
export async function openLocation(text: string, storage?: Storage, opts: { objectLock?: boolean } = {}): Promise<RepositoryLocation> {
  const root = repositoryRoot(text);
  if (storage !== undefined || !isObjectLocation(text)) return { root, storage: storage ?? localStorage };
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
