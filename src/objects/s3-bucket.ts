/**
 * What S3ObjectStore.open asks of a bucket before it keeps objects there: that
 * it exists (made when missing, with object lock when asked), whether object
 * lock is on, and how it keeps versions, which decides how the store's
 * create-only puts and reads work (s3-versions.ts).
 */

import { createHash, randomBytes } from 'node:crypto';
import { CreateBucketCommand, GetBucketVersioningCommand, GetObjectLockConfigurationCommand, HeadBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { LifeboatError } from '../core/errors.js';
import type { S3Connection } from './s3-config.js';
import { deleteAllVersions, type BucketAccess } from './s3-versions.js';

/**
 * How the bucket keeps versions, as `open` found it. `plain`: versioning
 * never enabled. `if-none-match`: versioning Enabled and If-None-Match: *
 * honoured (the probe's second create was refused). `emulated`: versioning
 * Enabled and If-None-Match ignored (radosgw 16), so create-only puts and
 * readers follow "the oldest version since the newest delete marker wins"
 * (s3-versions.ts). `suspended`: every PUT overwrites the `null` version;
 * create-only puts are refused.
 */
export type BucketVersioning = 'plain' | 'if-none-match' | 'emulated' | 'suspended';

/** The bucket's access, with the store's key prefix and its endpoint (for messages). */
export interface BucketSetup extends BucketAccess {
  readonly prefix: string;
  readonly endpoint: string;
}

/** Makes the bucket if it is missing (unless `createBucket` is false) and reads its object lock and versioning. */
export async function prepareBucket(
  b: BucketSetup,
  conn: S3Connection,
  options: { readonly createBucket?: boolean; readonly objectLock?: boolean },
): Promise<{ versioning: BucketVersioning; locked: boolean }> {
  const Bucket = b.bucket;
  const bucketUrl = `s3://${Bucket}`;
  let exists = true;
  try {
    await b.call('check bucket', bucketUrl, () => b.client.send(new HeadBucketCommand({ Bucket })));
  } catch (err) {
    if (!(err instanceof LifeboatError && err.code === 'LFB_ERR_OBJECT_NOT_FOUND')) throw err;
    exists = false;
  }
  if (!exists) {
    if (options.createBucket === false)
      throw new LifeboatError('LFB_ERR_OBJECT_NOT_FOUND', `bucket ${bucketUrl} does not exist at ${b.endpoint}`, { details: { bucket: Bucket } });
    // A region other than us-east-1 must be named on AWS; S3 servers of our own (an endpoint) have their own zones.
    const constraint = conn.endpoint === undefined && conn.region !== undefined && conn.region !== 'us-east-1';
    try {
      await b.call('create bucket', bucketUrl, () =>
        b.client.send(
          new CreateBucketCommand({
            Bucket,
            ...(options.objectLock === true ? { ObjectLockEnabledForBucket: true } : {}),
            ...(constraint ? { CreateBucketConfiguration: { LocationConstraint: conn.region as never } } : {}),
          }),
        ),
      );
    } catch (err) {
      // Another opener created it meanwhile: what it has is checked below like any existing bucket.
      if (!(err instanceof LifeboatError && err.details['s3Code'] === 'BucketAlreadyOwnedByYou')) throw err;
    }
  }
  const versioning = await b.call('read versioning of', bucketUrl, () => b.client.send(new GetBucketVersioningCommand({ Bucket })));
  let locked = false;
  try {
    const lock = await b.call('read object lock of', bucketUrl, () => b.client.send(new GetObjectLockConfigurationCommand({ Bucket })));
    locked = lock.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
  } catch (err) {
    if (!(err instanceof LifeboatError && (err.code === 'LFB_ERR_IMMUTABLE_UNSUPPORTED' || err.code === 'LFB_ERR_OBJECT_NOT_FOUND'))) throw err;
  }
  if (options.objectLock === true && !locked)
    throw new LifeboatError(
      'LFB_ERR_IMMUTABLE_UNSUPPORTED',
      `bucket ${bucketUrl} has no object lock, and S3 enables it only when a bucket is created: use a new bucket`,
      { details: { bucket: Bucket } },
    );
  if (versioning.Status === 'Suspended') return { versioning: 'suspended', locked };
  if (versioning.Status !== 'Enabled') return { versioning: 'plain', locked };
  return { versioning: await probeIfNoneMatch(b), locked };
}

/**
 * Whether the versioned bucket honours If-None-Match: * : two create-only
 * puts of one probe key, then its versions removed. The key ends in `/`,
 * a name no object of a store can have (list skips it). When the probe
 * cannot write (a user without the right), the store emulates: that is
 * correct whether or not the header is honoured.
 */
async function probeIfNoneMatch(b: BucketSetup): Promise<'if-none-match' | 'emulated'> {
  const Key = `${b.prefix}.lifeboat-probe-${randomBytes(8).toString('hex')}/`;
  const target = `s3://${b.bucket}/${Key}`;
  const body = Buffer.from('probe');
  const md5 = createHash('md5').update(body).digest('base64');
  const create = (): Promise<unknown> =>
    b.call('probe create-only put', target, () =>
      b.client.send(new PutObjectCommand({ Bucket: b.bucket, Key, Body: body, ContentLength: body.length, ContentMD5: md5, IfNoneMatch: '*' })),
    );
  try {
    await create();
    try {
      await create();
      return 'emulated';
    } catch (err) {
      if (err instanceof LifeboatError && err.code === 'LFB_ERR_OBJECT_EXISTS') return 'if-none-match';
      throw err;
    }
  } catch (err) {
    if (err instanceof LifeboatError && err.code === 'LFB_ERR_STORE_DENIED') return 'emulated';
    throw err;
  } finally {
    await deleteAllVersions(b, Key, target, true).catch(() => undefined);
  }
}
