import { LifeboatError, type ErrorCode } from '../core/errors.js';

/** What a failed S3 call was doing, for the message. */
export interface S3CallContext {
  /** 'put', 'get', 'head', 'list', 'delete', 'create bucket', … */
  readonly op: string;
  /** s3://bucket/key (or the bucket's URL). */
  readonly target: string;
  /** The endpoint, or 'AWS S3'. */
  readonly endpoint: string;
  /** The stall deadline, for a timeout's message. */
  readonly timeoutMs: number;
}

interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  Code?: string;
}

// Connection-level failures (errno codes of node:net/dns): the endpoint is not there or went away.
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
]);
const DENIED = new Set([
  'AccessDenied',
  'SignatureDoesNotMatch',
  'InvalidAccessKeyId',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'AllAccessDisabled',
  'AccountProblem',
  'CredentialsProviderError',
]);
const NO_SPACE = new Set(['QuotaExceeded', 'InsufficientStorage']);
const INVALID = new Set(['InvalidObjectName', 'KeyTooLongError', 'EntityTooLarge', 'InvalidBucketName', 'InvalidArgument']);

function shape(err: unknown): SdkErrorShape {
  return typeof err === 'object' && err !== null ? (err as SdkErrorShape) : { message: String(err) };
}

/** The S3 error code (NoSuchKey, AccessDenied, …), or the errno of a connection failure. */
export function s3ErrorName(err: unknown): string {
  const e = shape(err);
  if (e.code !== undefined && UNREACHABLE.has(e.code)) return e.code;
  return e.Code ?? e.name ?? e.code ?? 'Error';
}

export function s3Status(err: unknown): number | undefined {
  return shape(err).$metadata?.httpStatusCode;
}

/**
 * The one place S3 and SDK errors become Lifeboat's stable codes: a stalled
 * endpoint (the SDK's socket or connect timeout, or an abort) →
 * LFB_ERR_STORE_TIMEOUT; refused or reset connections and 5xx →
 * LFB_ERR_STORE_UNAVAILABLE; 412 → LFB_ERR_OBJECT_EXISTS; 404 →
 * LFB_ERR_OBJECT_NOT_FOUND; QuotaExceeded → LFB_ERR_NO_SPACE; refused
 * credentials → LFB_ERR_STORE_DENIED; a bucket without object lock asked for
 * it → LFB_ERR_IMMUTABLE_UNSUPPORTED; anything else → LFB_ERR_IO with the
 * status and S3 code. (A locked object's refused delete is told apart from
 * refused credentials by the store, which reads the object's retention.)
 */
export function fromS3Error(err: unknown, ctx: S3CallContext): LifeboatError {
  if (err instanceof LifeboatError) return err;
  const e = shape(err);
  const name = s3ErrorName(err);
  const status = s3Status(err);
  const why = e.message ?? name;
  const details = { target: ctx.target, endpoint: ctx.endpoint, s3Code: name, ...(status !== undefined ? { status } : {}) };
  const make = (code: ErrorCode, message: string): LifeboatError => new LifeboatError(code, `${ctx.op} ${ctx.target}: ${message}`, { cause: err, details });

  // The SDK names resets and broken pipes TimeoutError too: the errno decides.
  if (e.code !== undefined && UNREACHABLE.has(e.code)) return make('LFB_ERR_STORE_UNAVAILABLE', `cannot reach ${ctx.endpoint} (${e.code}: ${why})`);
  if (name === 'TimeoutError' || name === 'AbortError' || e.code === 'ETIMEDOUT' || name === 'RequestTimeout')
    return make(
      'LFB_ERR_STORE_TIMEOUT',
      `${ctx.endpoint} sent nothing for ${(ctx.timeoutMs / 1000).toFixed(1)} s; the object store is stalled (radosgw waits forever when an OSD is down) or unreachable`,
    );
  if (status === 412 || name === 'PreconditionFailed')
    return make('LFB_ERR_OBJECT_EXISTS', 'an object of that name exists (create-only put); nothing was changed');
  if (name === 'NoSuchBucket') return make('LFB_ERR_OBJECT_NOT_FOUND', 'the bucket does not exist');
  // Before the 404 check: AWS answers a bucket without an object-lock configuration with 404.
  if (name === 'InvalidBucketState' || name === 'ObjectLockConfigurationNotFoundError')
    return make('LFB_ERR_IMMUTABLE_UNSUPPORTED', `the bucket has no object lock (S3 enables it only when a bucket is created): ${why}`);
  if (status === 404 || name === 'NoSuchKey' || name === 'NotFound') return make('LFB_ERR_OBJECT_NOT_FOUND', 'no such object');
  if (NO_SPACE.has(name)) return make('LFB_ERR_NO_SPACE', `the object store refused the write: ${name} (quota or capacity reached)`);
  if (name === 'ConditionalRequestConflict')
    return make(
      'LFB_ERR_STORE_UNAVAILABLE',
      `${ctx.endpoint} kept answering 409 ConditionalRequestConflict (another write of that name in progress) after retries`,
    );
  if (DENIED.has(name) || status === 401 || status === 403)
    return make('LFB_ERR_STORE_DENIED', `${ctx.endpoint} refused the request: ${name}${why !== name ? ` (${why})` : ''}`);
  if (INVALID.has(name)) return make('LFB_ERR_INVALID_ARGUMENT', `the object store refused the name or size: ${name} (${why})`);
  if ((status !== undefined && status >= 500) || name === 'SlowDown' || name === 'ServiceUnavailable' || name === 'InternalError')
    return make('LFB_ERR_STORE_UNAVAILABLE', `${ctx.endpoint} answered ${status ?? ''} ${name} after retries`);
  return make('LFB_ERR_IO', `S3 error ${status ?? ''} ${name}: ${why}`.replace(/ {2}/g, ' '));
}

/**
 * Whether a failed attempt is worth another: a connection reset, a 5xx
 * or SlowDown answer, or a 409 ConditionalRequestConflict. Never a timeout (a stalled endpoint stays stalled, and
 * the deadline is the caller's promise) nor a 4xx.
 */
export function isRetryable(err: unknown): boolean {
  const e = shape(err);
  if (e.code === 'ECONNRESET' || e.code === 'EPIPE' || e.code === 'ECONNREFUSED' || e.code === 'ERR_STREAM_PREMATURE_CLOSE') return true;
  const status = s3Status(err);
  const name = s3ErrorName(err);
  // 409 ConditionalRequestConflict: AWS's answer to a create-only put racing another on one key; asked again, one has won.
  return (
    (status !== undefined && status >= 500) ||
    name === 'SlowDown' ||
    name === 'InternalError' ||
    name === 'ServiceUnavailable' ||
    name === 'ConditionalRequestConflict'
  );
}
