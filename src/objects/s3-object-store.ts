import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { LifeboatError } from '../core/errors.js';
import { Limiter } from './limiter.js';
import {
  checkObjectName,
  checkObjectPrefix,
  checkPutSize,
  checkRange,
  type ByteRange,
  type ObjectHead,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './object-store.js';
import { formatS3Url, parseS3Url, s3ConnectionFromEnv, type S3Connection, type S3Location } from './s3-config.js';
import { fromS3Error, isRetryable, s3ErrorName, s3Status } from './s3-errors.js';
import { prepareBucket, type BucketVersioning } from './s3-bucket.js';
import { deleteAllVersions, listVersions, settleCreateOnly, settlePlainPut, versionsByKey, winnerOf, type BucketAccess } from './s3-versions.js';

export type { BucketVersioning } from './s3-bucket.js';

export interface S3StoreOptions {
  /** Endpoint, region, credentials; default: the standard AWS environment (s3ConnectionFromEnv). */
  readonly connection?: S3Connection;
  /** Create the bucket when it does not exist (default true). */
  readonly createBucket?: boolean;
  /** The bucket must have object lock (created with it when missing); without it, open fails with LFB_ERR_IMMUTABLE_UNSUPPORTED. */
  readonly objectLock?: boolean;
  /**
   * A request whose endpoint sends nothing for this long fails with LFB_ERR_STORE_TIMEOUT (default 30 s).
   * For 6 s and more the SDK arms its socket timer up to 3 s late, so such a failure comes by timeoutMs + 3 s.
   */
  readonly timeoutMs?: number;
  /** Requests in flight at most, the store's calls together (default 8). */
  readonly maxInFlight?: number;
  /** Keys per ListObjectsV2 page (default and S3's maximum 1000). */
  readonly listPageSize?: number;
}

const ATTEMPTS = 4;

/**
 * Objects in an S3 bucket under a key prefix, through @aws-sdk/client-s3.
 * Settings that matter against radosgw (docs/design.md §The object-store
 * seam): path-style addressing whenever an endpoint is given; checksums only
 * when required (radosgw 16 cannot read the SDK's aws-chunked trailers) and
 * Content-MD5 on every put instead, which radosgw verifies; no
 * Expect: 100-continue (refusals of big bodies would arrive as EPIPE); a
 * stall deadline on every request (radosgw never fails a request whose OSD
 * is gone); our own retries (a timeout is never retried, and a create-only
 * put whose earlier attempt may have landed checks what it wrote). On a
 * versioned bucket (every object-lock bucket) deletes remove every version;
 * where radosgw ignores If-None-Match there (`versioning: 'emulated'`), puts,
 * get, head and list go through s3-versions.ts's rule: the oldest version
 * since the newest delete marker is what a name holds.
 */
export class S3ObjectStore implements ObjectStore {
  readonly location: string;
  private readonly limiter: Limiter;
  private readonly access: BucketAccess;

  private constructor(
    private readonly client: S3Client,
    private readonly where: S3Location,
    private readonly endpoint: string,
    private readonly timeoutMs: number,
    private readonly pageSize: number,
    maxInFlight: number,
    /** Object lock is on for the bucket. */
    readonly retention: boolean,
    /** How the bucket keeps versions (the probe's answer at open). */
    readonly versioning: BucketVersioning,
  ) {
    this.location = formatS3Url(where);
    this.limiter = new Limiter(maxInFlight);
    this.access = { client, bucket: where.bucket, call: (op, target, fn) => this.call(op, target, fn) };
  }

  /** Opens `s3://bucket/prefix`, creating the bucket (with object lock when asked) if it does not exist. */
  static async open(url: string, options: S3StoreOptions = {}): Promise<S3ObjectStore> {
    const where = parseS3Url(url);
    // The SDK warns on Node 20 that its releases of 2027 will need Node 22: package.json pins one that runs on 20,
    // so the warning is no news to a user of Lifeboat's commands.
    process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
    const conn = options.connection ?? s3ConnectionFromEnv();
    const timeoutMs = options.timeoutMs ?? 30_000;
    const maxInFlight = options.maxInFlight ?? 8;
    const agent = { keepAlive: true, maxSockets: maxInFlight };
    const client = new S3Client({
      ...(conn.region !== undefined ? { region: conn.region } : {}),
      ...(conn.endpoint !== undefined ? { endpoint: conn.endpoint, forcePathStyle: true } : {}),
      ...(conn.credentials !== undefined ? { credentials: conn.credentials } : {}),
      ...(conn.profile !== undefined ? { profile: conn.profile } : {}),
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      expectContinueHeader: false,
      requestHandler: { connectionTimeout: timeoutMs, socketTimeout: timeoutMs, httpAgent: new HttpAgent(agent), httpsAgent: new HttpsAgent(agent) },
    });
    const endpoint = conn.endpoint ?? 'AWS S3';
    const probe = new S3ObjectStore(client, where, endpoint, timeoutMs, 1000, maxInFlight, false, 'plain');
    try {
      const { versioning, locked } = await prepareBucket({ ...probe.access, prefix: where.prefix, endpoint }, conn, options);
      return new S3ObjectStore(client, where, endpoint, timeoutMs, options.listPageSize ?? 1000, maxInFlight, locked, versioning);
    } catch (err) {
      client.destroy();
      throw err;
    }
  }

  private key(name: string): string {
    return this.where.prefix + name;
  }

  private url(name: string): string {
    return `s3://${this.where.bucket}/${this.key(name)}`;
  }

  /**
   * One S3 call with a place among the requests in flight, retried with
   * backoff after a reset connection or a 5xx (ATTEMPTS in all), and its
   * failure mapped to a stable code. `fn` does the whole exchange, body
   * included, so the place is held until the bytes are in; it is given back
   * during the back-off between attempts.
   */
  private async call<T>(op: string, target: string, fn: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      // The place is given back during the back-off sleep: a waiting call may use it meanwhile.
      const release = await this.limiter.acquire();
      let failure: unknown;
      try {
        return await fn(attempt);
      } catch (err) {
        failure = err;
      } finally {
        release();
      }
      if (attempt < ATTEMPTS && isRetryable(failure)) {
        await sleep(50 * 2 ** attempt * (0.5 + Math.random()));
        continue;
      }
      throw fromS3Error(failure, { op, target, endpoint: this.endpoint, timeoutMs: this.timeoutMs });
    }
  }

  async put(name: string, data: Uint8Array, options: PutOptions = {}): Promise<void> {
    checkObjectName(name);
    checkPutSize(name, data);
    if (options.retainUntil !== undefined && !this.retention)
      throw new LifeboatError(
        'LFB_ERR_IMMUTABLE_UNSUPPORTED',
        `put ${this.url(name)}: the bucket has no object lock, so no retention date can be kept; nothing was written`,
        {
          details: { name },
        },
      );
    const md5 = createHash('md5').update(data).digest();
    const createOnly = options.ifNoneMatch === '*';
    if (createOnly && this.versioning === 'suspended')
      throw new LifeboatError(
        'LFB_ERR_STORE_UNSUPPORTED',
        `put ${this.url(name)}: the bucket's versioning is Suspended, where every PUT overwrites the object's one "null" version, so a create-only put cannot be made; use a bucket with versioning Enabled or never enabled; nothing was written`,
        { details: { name, bucket: this.where.bucket } },
      );
    // radosgw ignores If-None-Match on a versioned bucket: there every put is settled after it (s3-versions.ts),
    // and the retention date comes after that.
    const settleAfter = this.versioning === 'emulated';
    const retainNow = settleAfter ? undefined : options.retainUntil;
    let uncertain = false;
    const versionId = await this.call('put', this.url(name), async () => {
      try {
        const res = await this.client.send(
          new PutObjectCommand({
            Bucket: this.where.bucket,
            Key: this.key(name),
            Body: data,
            ContentLength: data.length,
            ContentMD5: md5.toString('base64'),
            ...(createOnly ? { IfNoneMatch: '*' } : {}),
            ...(retainNow !== undefined ? { ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: retainNow } : {}),
          }),
        );
        return res.VersionId;
      } catch (err) {
        // A create-only put refused after an attempt whose answer was lost: if the object holds our bytes, that attempt won.
        if (createOnly && uncertain && (s3Status(err) === 412 || s3ErrorName(err) === 'PreconditionFailed')) {
          let head;
          try {
            head = await this.client.send(new HeadObjectCommand({ Bucket: this.where.bucket, Key: this.key(name) }));
          } catch (headErr) {
            // Gone since the refusal (deleted meanwhile): the refusal stands, the put changed nothing.
            if (s3Status(headErr) === 404 || s3ErrorName(headErr) === 'NotFound') throw err;
            throw fromS3Error(headErr, {
              op: 'head (after a refused retry of a put)',
              target: this.url(name),
              endpoint: this.endpoint,
              timeoutMs: this.timeoutMs,
            });
          }
          if (head.ETag?.replace(/"/g, '') === md5.toString('hex')) return head.VersionId;
        }
        // AWS answers 409 to a create-only put racing another on the same key (retried by call: one has won by then);
        // the attempt changed nothing, so it does not make the outcome uncertain.
        if (isRetryable(err) && s3ErrorName(err) !== 'ConditionalRequestConflict') uncertain = true;
        throw err;
      }
    });
    if (!settleAfter) return;
    if (versionId === undefined)
      throw new LifeboatError('LFB_ERR_IO', `put ${this.url(name)}: the versioned bucket gave the new object no version id`, { details: { name } });
    if (createOnly) await settleCreateOnly(this.access, this.key(name), this.url(name), versionId, md5.toString('hex'), uncertain, options.retainUntil);
    else await settlePlainPut(this.access, this.key(name), this.url(name), versionId, options.retainUntil);
  }

  /**
   * On an emulating bucket, runs `fn` with the version the name reads as
   * (its winner); undefined when the name has none. The version can be
   * removed between the listing and `fn` (a plain put replacing it, a
   * delete): on LFB_ERR_OBJECT_NOT_FOUND the winner is looked up again.
   */
  private async onWinner<T>(name: string, fn: (versionId: string | undefined) => Promise<T>): Promise<T> {
    if (this.versioning !== 'emulated') return fn(undefined);
    for (let tries = 1; ; tries++) {
      const winner = winnerOf(await listVersions(this.access, this.key(name), this.url(name)));
      if (winner === undefined)
        throw new LifeboatError('LFB_ERR_OBJECT_NOT_FOUND', `get ${this.url(name)}: no such object`, { details: { target: this.url(name) } });
      try {
        return await fn(winner.versionId);
      } catch (err) {
        if (tries < 3 && err instanceof LifeboatError && err.code === 'LFB_ERR_OBJECT_NOT_FOUND') continue;
        throw err;
      }
    }
  }

  async get(name: string, range?: ByteRange): Promise<Buffer> {
    checkObjectName(name);
    if (range !== undefined) checkRange(name, range);
    return this.onWinner(name, (VersionId) => this.getVersion(name, VersionId, range));
  }

  private getVersion(name: string, versionId: string | undefined, range: ByteRange | undefined): Promise<Buffer> {
    return this.call('get', this.url(name), async () => {
      let res;
      try {
        res = await this.client.send(
          new GetObjectCommand({
            Bucket: this.where.bucket,
            Key: this.key(name),
            ...(versionId !== undefined ? { VersionId: versionId } : {}),
            ...(range !== undefined ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
          }),
        );
      } catch (err) {
        // 416: the object exists and the range starts at or after its end (or it is empty).
        if (range !== undefined && (s3Status(err) === 416 || s3ErrorName(err) === 'InvalidRange')) return Buffer.alloc(0);
        throw err;
      }
      const body = await readBody(res.Body as Readable | undefined, res.ContentLength, this.url(name));
      if (range === undefined) return body;
      const start = /^bytes (\d+)-/.exec(res.ContentRange ?? '')?.[1];
      // A server that ignores Range sends the whole object with 200.
      if (start === undefined) return body.subarray(range.offset, range.offset + range.length);
      if (Number(start) !== range.offset)
        throw new LifeboatError('LFB_ERR_IO', `get ${this.url(name)}: asked for bytes from ${range.offset}, the store answered ${res.ContentRange}`, {
          details: { name },
        });
      return body;
    });
  }

  async head(name: string): Promise<ObjectHead | undefined> {
    checkObjectName(name);
    try {
      const res = await this.onWinner(name, (VersionId) =>
        this.call('head', this.url(name), () =>
          this.client.send(new HeadObjectCommand({ Bucket: this.where.bucket, Key: this.key(name), ...(VersionId !== undefined ? { VersionId } : {}) })),
        ),
      );
      return { size: res.ContentLength ?? 0, ...(res.ObjectLockRetainUntilDate !== undefined ? { retainUntil: res.ObjectLockRetainUntilDate } : {}) };
    } catch (err) {
      if (err instanceof LifeboatError && err.code === 'LFB_ERR_OBJECT_NOT_FOUND') return undefined;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkObjectPrefix(prefix);
    if (this.versioning === 'emulated') {
      // Each key's winner, and its size (a younger version left behind must not change it).
      for await (const group of versionsByKey(this.access, this.key(prefix), this.url(prefix), this.pageSize)) {
        const winner = winnerOf(group);
        const name = group[0]!.key.slice(this.where.prefix.length);
        if (winner === undefined || !validName(name)) continue;
        yield { name, size: winner.size };
      }
      return;
    }
    let token: string | undefined;
    do {
      const page = await this.call('list', this.url(prefix), () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.where.bucket,
            Prefix: this.key(prefix),
            MaxKeys: this.pageSize,
            ...(token !== undefined ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      for (const o of page.Contents ?? []) {
        const name = (o.Key ?? '').slice(this.where.prefix.length);
        if (!validName(name)) continue; // a key written by something else, with a name no object here can have
        yield { name, size: o.Size ?? 0 };
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async delete(name: string): Promise<void> {
    checkObjectName(name);
    const Key = this.key(name);
    if (this.versioning !== 'plain') return deleteAllVersions(this.access, Key, this.url(name), this.versioning === 'emulated');
    await this.call('delete', this.url(name), () => this.client.send(new DeleteObjectCommand({ Bucket: this.where.bucket, Key })));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** Requests in flight now (tests check the bound). */
  get inFlight(): number {
    return this.limiter.inFlight;
  }
}

function validName(name: string): boolean {
  try {
    checkObjectName(name);
    return true;
  } catch {
    return false;
  }
}

/** The body into one buffer of the announced length; a body that ends early or runs long is an error, not short data. */
async function readBody(body: Readable | undefined, length: number | undefined, url: string): Promise<Buffer> {
  if (body === undefined) return Buffer.alloc(0);
  if (length === undefined) {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  for await (const chunk of body) {
    const c = chunk as Buffer;
    if (at + c.length > length) {
      body.destroy();
      throw new LifeboatError('LFB_ERR_IO', `get ${url}: the body runs past its Content-Length of ${length}`, { details: { url } });
    }
    c.copy(out, at);
    at += c.length;
  }
  // A cut connection: retried like a reset.
  if (at !== length) throw Object.assign(new Error(`the body ended after ${at} of ${length} bytes`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  return out;
}
