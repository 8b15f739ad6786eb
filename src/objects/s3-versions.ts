import {
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectRetentionCommand,
  type ListObjectVersionsCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { systemClock } from '../core/clock.js';
import { LifeboatError } from '../core/errors.js';
import { compareNames } from './object-store.js';

/**
 * Versioned buckets (object lock always comes with versioning). Two things
 * differ there: a plain DELETE only adds a delete marker and keeps every
 * byte, so a delete removes each version; and radosgw 16 ignores
 * If-None-Match: * on such a bucket (a create-only PUT of an existing name
 * just adds a version). Where the store's probe at open found that
 * (`emulated`), one rule decides what a name holds, for writers and readers
 * alike: **the oldest version since the newest delete marker** (the
 * "winner"). A create-only put keeps its version only if it is the winner;
 * a plain put removes the older versions after its own (so it becomes the
 * oldest); get, head and list read the winner by its version id, so a
 * younger version left behind (a loser that crashed before removing its
 * own, a retry's extra attempt, a version a default retention rule locked)
 * never changes what the name reads as. What this does not give: a
 * version's time and its appearance in a listing are not one atomic step,
 * so two racing create-only writers can each be told they won
 * (docs/design.md §The object-store seam).
 */

/** What these helpers need of the store: its client and bucket, and its call wrapper (requests in flight, retries, error codes). */
export interface BucketAccess {
  readonly client: S3Client;
  readonly bucket: string;
  call<T>(op: string, target: string, fn: () => Promise<T>): Promise<T>;
}

export interface KeyVersion {
  readonly key: string;
  readonly versionId: string;
  readonly marker: boolean;
  readonly etag: string;
  readonly time: number;
  readonly size: number;
}

/** One page's versions and delete markers, by key (byte order), each key's newest first. */
function pageVersions(page: ListObjectVersionsCommandOutput): KeyVersion[] {
  const out: KeyVersion[] = [];
  // The SDK splits versions and markers into two lists; within each, S3's order (by key, newest first) is kept.
  for (const v of page.Versions ?? [])
    if (v.Key !== undefined && v.VersionId !== undefined)
      out.push({
        key: v.Key,
        versionId: v.VersionId,
        marker: false,
        etag: (v.ETag ?? '').replace(/"/g, ''),
        time: v.LastModified?.getTime() ?? 0,
        size: v.Size ?? 0,
      });
  for (const m of page.DeleteMarkers ?? [])
    if (m.Key !== undefined && m.VersionId !== undefined)
      out.push({ key: m.Key, versionId: m.VersionId, marker: true, etag: '', time: m.LastModified?.getTime() ?? 0, size: 0 });
  // A stable sort keeps S3's order among versions of the same millisecond.
  return out.sort((x, y) => compareNames(x.key, y.key) || y.time - x.time);
}

/**
 * Every version and delete marker under `prefix`, page by page, grouped by
 * key (in byte order), each group newest first. A key's versions may span
 * pages: a group is yielded once the next key begins (or the listing ends).
 */
export async function* versionsByKey(b: BucketAccess, prefix: string, target: string, pageSize = 1000, onlyKey?: string): AsyncIterable<KeyVersion[]> {
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  let group: KeyVersion[] = [];
  for (;;) {
    const page = await b.call('list versions of', target, () =>
      b.client.send(
        new ListObjectVersionsCommand({
          Bucket: b.bucket,
          Prefix: prefix,
          MaxKeys: pageSize,
          ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}),
          ...(versionMarker !== undefined ? { VersionIdMarker: versionMarker } : {}),
        }),
      ),
    );
    for (const v of pageVersions(page)) {
      if (onlyKey !== undefined && v.key !== onlyKey) continue;
      if (group.length > 0 && group[0]!.key !== v.key) {
        yield group;
        group = [];
      }
      group.push(v);
    }
    const next = page.NextKeyMarker;
    if (page.IsTruncated !== true || next === undefined) break;
    // One key asked for: keys come in byte order, so once past it (other keys may share the prefix) nothing more of it follows.
    if (onlyKey !== undefined && compareNames(next, onlyKey) > 0) break;
    keyMarker = next;
    versionMarker = page.NextVersionIdMarker;
  }
  if (group.length > 0) yield group;
}

/** The key's versions and delete markers, newest first. A key has few: they are held in memory. */
export async function listVersions(b: BucketAccess, key: string, target: string): Promise<KeyVersion[]> {
  const out: KeyVersion[] = [];
  for await (const group of versionsByKey(b, key, target, 1000, key)) out.push(...group);
  return out;
}

/** The versions since the newest delete marker, oldest first: the first is what the name holds (the winner). */
export function liveVersions(newestFirst: readonly KeyVersion[]): KeyVersion[] {
  const marker = newestFirst.findIndex((v) => v.marker);
  return (marker < 0 ? [...newestFirst] : newestFirst.slice(0, marker)).reverse();
}

/** The version a name reads as on an emulating bucket, or undefined when it has none. */
export function winnerOf(newestFirst: readonly KeyVersion[]): KeyVersion | undefined {
  return liveVersions(newestFirst)[0];
}

/**
 * After a create-only PUT on an emulating bucket made version `mine`: keeps
 * it if it is the winner, else removes it again and fails with
 * LFB_ERR_OBJECT_EXISTS. The winner counts as ours, too, when it holds our
 * bytes (its ETag is our MD5) and either an earlier attempt of this put may
 * have landed (`uncertain`: an attempt's answer was lost) or it lacks the
 * retention date we ask for (an earlier put() of ours landed and then its
 * retention call failed or it crashed: the retry completes it rather than
 * looking like a loser). When the outcome was uncertain, every younger
 * version holding our bytes is one of our attempts and is removed too,
 * whoever won. A kept version then gets its retention date (set only now,
 * so a loser's version never has one and can always be removed).
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
  const live = liveVersions(await listVersions(b, key, target));
  const winner = live[0];
  let ours = winner !== undefined && (winner.versionId === mine || (uncertain && winner.etag === md5hex));
  let winnerRetention: Date | undefined;
  if (winner !== undefined && !ours && winner.etag === md5hex && retainUntil !== undefined) {
    winnerRetention = await versionRetention(b, key, target, winner.versionId);
    ours = winnerRetention === undefined || winnerRetention.getTime() < retainUntil.getTime();
  }
  // Ours to remove: this attempt's version unless it won, and (after a retry) every younger attempt with our bytes.
  const extra = live.filter((v) => v !== winner && (v.versionId === mine || (uncertain && v.etag === md5hex)));
  if (!live.some((v) => v.versionId === mine) && winner?.versionId !== mine)
    extra.push({ key, versionId: mine, marker: false, etag: md5hex, time: 0, size: 0 });
  for (const v of extra.reverse()) await deleteVersion(b, key, target, v.versionId);
  if (!ours || winner === undefined)
    throw new LifeboatError('LFB_ERR_OBJECT_EXISTS', `put ${target}: an object of that name exists (create-only put); nothing was changed`, {
      details: { target, versionId: winner?.versionId },
    });
  if (retainUntil !== undefined && (winnerRetention === undefined || winnerRetention.getTime() < retainUntil.getTime()))
    await setRetention(b, key, target, winner.versionId, retainUntil);
}

/**
 * After a plain PUT on an emulating bucket made version `mine`: removes the
 * versions older than it since the newest delete marker, newest first, so
 * that the name reads as the old object until the last of them goes and as
 * ours after. One that object lock keeps stops it: ours is removed again and
 * the put fails with LFB_ERR_IMMUTABLE (a locked object is not replaced).
 */
export async function settlePlainPut(b: BucketAccess, key: string, target: string, mine: string, retainUntil: Date | undefined): Promise<void> {
  const live = liveVersions(await listVersions(b, key, target));
  const at = live.findIndex((v) => v.versionId === mine);
  // Not listed (a newer delete marker: the object was deleted meanwhile): nothing of ours is left to settle.
  if (at < 0) return;
  try {
    for (const v of live.slice(0, at).reverse()) await deleteVersion(b, key, target, v.versionId);
  } catch (err) {
    await deleteVersion(b, key, target, mine).catch(() => undefined);
    if (err instanceof LifeboatError && err.code === 'LFB_ERR_IMMUTABLE')
      throw new LifeboatError('LFB_ERR_IMMUTABLE', `put ${target}: ${err.message.replace(/^delete \S+: /, '')}; it was not replaced`, {
        cause: err,
        details: err.details,
      });
    throw err;
  }
  if (retainUntil !== undefined) await setRetention(b, key, target, mine, retainUntil);
}

async function setRetention(b: BucketAccess, key: string, target: string, versionId: string, retainUntil: Date): Promise<void> {
  await b.call('set retention of', target, () =>
    b.client.send(
      new PutObjectRetentionCommand({ Bucket: b.bucket, Key: key, VersionId: versionId, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: retainUntil } }),
    ),
  );
}

async function versionRetention(b: BucketAccess, key: string, target: string, versionId: string): Promise<Date | undefined> {
  const head = await b.call('head', target, () => b.client.send(new HeadObjectCommand({ Bucket: b.bucket, Key: key, VersionId: versionId })));
  return head.ObjectLockRetainUntilDate;
}

/**
 * Removes every version and delete marker of the key. With `oldestWins`
 * (an emulating bucket) the versions since the newest delete marker go
 * newest first, so the name reads as its winner until that goes last; then
 * the versions behind markers, then the markers (removing a marker first
 * would bring older versions back). Otherwise (the newest version is
 * current) oldest first. Either way a version the lock still keeps stops it
 * with the object reading as it did.
 */
export async function deleteAllVersions(b: BucketAccess, key: string, target: string, oldestWins: boolean): Promise<void> {
  const all = await listVersions(b, key, target);
  let order: KeyVersion[];
  if (oldestWins) {
    const live = liveVersions(all);
    const rest = all.filter((v) => !live.includes(v));
    order = [...live.reverse(), ...rest.filter((v) => !v.marker), ...rest.filter((v) => v.marker)];
  } else order = [...all].reverse();
  for (const v of order) await deleteVersion(b, key, target, v.versionId);
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
