import { DeleteObjectCommand, HeadObjectCommand, ListObjectVersionsCommand, PutObjectRetentionCommand, type S3Client } from '@aws-sdk/client-s3';
import { systemClock } from '../core/clock.js';
import { LifeboatError } from '../core/errors.js';
import { compareNames } from './object-store.js';

/**
 * Versioned buckets (object lock always comes with versioning). Two things
 * differ there: a plain DELETE only adds a delete marker and keeps every
 * byte, so a delete removes each version; and radosgw 16 ignores
 * If-None-Match: * on such a bucket (a create-only PUT of an existing name
 * just adds a version), so create-only is done by the rule "the oldest
 * version since the last delete marker wins", which every racer evaluates
 * alike after its PUT.
 */

/** What these helpers need of the store: its client and bucket, and its call wrapper (requests in flight, retries, error codes). */
export interface BucketAccess {
  readonly client: S3Client;
  readonly bucket: string;
  call<T>(op: string, target: string, fn: () => Promise<T>): Promise<T>;
}

interface KeyVersion {
  readonly versionId: string;
  readonly marker: boolean;
  readonly etag: string;
  readonly time: number;
}

/** The key's versions and delete markers, newest first. A key has few: they are held in memory. */
export async function listVersions(b: BucketAccess, key: string, target: string): Promise<KeyVersion[]> {
  const out: KeyVersion[] = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    const page = await b.call('list versions of', target, () =>
      b.client.send(
        new ListObjectVersionsCommand({
          Bucket: b.bucket,
          Prefix: key,
          MaxKeys: 1000,
          ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
          ...(versionMarker !== undefined ? { VersionIdMarker: versionMarker } : {}),
        }),
      ),
    );
    // The SDK splits versions and markers into two lists; within each, S3's order (newest first) is kept.
    const versions = (page.Versions ?? []).filter((v) => v.Key === key && v.VersionId !== undefined);
    const markers = (page.DeleteMarkers ?? []).filter((v) => v.Key === key && v.VersionId !== undefined);
    for (const v of versions)
      out.push({ versionId: v.VersionId!, marker: false, etag: (v.ETag ?? '').replace(/"/g, ''), time: v.LastModified?.getTime() ?? 0 });
    for (const m of markers) out.push({ versionId: m.VersionId!, marker: true, etag: '', time: m.LastModified?.getTime() ?? 0 });
    // Keys come in byte order: once past this one (other keys may share the prefix), nothing more of it follows.
    const next = page.NextKeyMarker;
    if (page.IsTruncated !== true || next === undefined || compareNames(next, key) > 0) break;
    keyMarker = next;
    versionMarker = page.NextVersionIdMarker;
  }
  // A stable sort by time keeps S3's order among versions of the same millisecond.
  return out.sort((x, y) => y.time - x.time);
}

/**
 * After a create-only PUT on a versioned bucket made version `mine`: keeps it
 * if it is the oldest version since the newest delete marker, else removes it
 * again and fails with LFB_ERR_OBJECT_EXISTS. When an earlier attempt of this
 * same put may have landed (its answer was lost), a winner holding our bytes
 * is ours. A won version then gets its retention date (set only now, so a
 * loser's version never has one and can always be removed). Between the PUT
 * and the removal, a reader of the name may see the loser's bytes.
 */
export async function settleCreateOnly(
  b: BucketAccess,
  key: string,
  target: string,
  mine: string,
  md5hex: string,
  uncertain: boolean,
  retainUntil: Date | undefined,
): Promise<void> {
  const all = await listVersions(b, key, target);
  const newestMarker = all.find((v) => v.marker);
  const live = all.filter((v) => !v.marker && (newestMarker === undefined || v.time > newestMarker.time));
  const winner = live[live.length - 1];
  let kept = mine;
  if (winner === undefined || winner.versionId !== mine) {
    const ours = winner !== undefined && uncertain && winner.etag === md5hex;
    await deleteVersion(b, key, target, mine);
    if (!ours)
      throw new LifeboatError('LFB_ERR_OBJECT_EXISTS', `put ${target}: an object of that name exists (create-only put); nothing was changed`, {
        details: { target, versionId: winner?.versionId },
      });
    kept = winner.versionId;
  }
  if (retainUntil !== undefined)
    await b.call('set retention of', target, () =>
      b.client.send(
        new PutObjectRetentionCommand({ Bucket: b.bucket, Key: key, VersionId: kept, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: retainUntil } }),
      ),
    );
}

/** Removes every version and delete marker of the key, oldest first: a version the lock keeps stops it with the object reading as it did. */
export async function deleteAllVersions(b: BucketAccess, key: string, target: string): Promise<void> {
  for (const v of (await listVersions(b, key, target)).reverse()) await deleteVersion(b, key, target, v.versionId);
}

async function deleteVersion(b: BucketAccess, key: string, target: string, versionId: string): Promise<void> {
  try {
    await b.call('delete', target, () => b.client.send(new DeleteObjectCommand({ Bucket: b.bucket, Key: key, VersionId: versionId })));
  } catch (err) {
    if (err instanceof LifeboatError && err.code === 'LFB_ERR_STORE_DENIED') throw await lockedOrDenied(b, key, target, versionId, err);
    throw err;
  }
}

/** A refused delete of a version: LFB_ERR_IMMUTABLE with its date when object lock keeps it, else the refusal as it was. */
async function lockedOrDenied(b: BucketAccess, key: string, target: string, versionId: string, denied: LifeboatError): Promise<LifeboatError> {
  const head = await b
    .call('head', target, () => b.client.send(new HeadObjectCommand({ Bucket: b.bucket, Key: key, VersionId: versionId })))
    .catch(() => undefined);
  const until = head?.ObjectLockRetainUntilDate;
  if (until === undefined || until.getTime() <= systemClock.now().getTime()) return denied;
  return new LifeboatError(
    'LFB_ERR_IMMUTABLE',
    `delete ${target}: object lock (${head?.ObjectLockMode ?? 'retention'}) keeps this object until ${until.toISOString()}; nothing can delete it before then`,
    { cause: denied, details: { target, versionId, retainUntil: until.toISOString(), mode: head?.ObjectLockMode } },
  );
}
