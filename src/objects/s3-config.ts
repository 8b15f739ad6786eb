import { LifeboatError } from '../core/errors.js';
import { checkObjectPrefix } from './object-store.js';

/** Where a store's objects are: a bucket and a key prefix ('' or ending in '/'). */
export interface S3Location {
  readonly bucket: string;
  readonly prefix: string;
}

/** How to reach the S3 service. Anything left out comes from the SDK's own chain (environment, ~/.aws profile). */
export interface S3Connection {
  /** e.g. http://127.0.0.1:7480 for radosgw; absent: AWS itself. Path-style addressing is used whenever it is set. */
  readonly endpoint?: string;
  readonly region?: string;
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
  /** An AWS profile name (AWS_PROFILE). */
  readonly profile?: string;
}

// S3's bucket naming rules (no uppercase, no underscores: path-style and DNS both accept these).
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

function usage(url: string, why: string): LifeboatError {
  return new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${JSON.stringify(url)}: ${why}; want s3://<bucket>/<prefix>`, { details: { url } });
}

/**
 * Parses `s3://bucket/prefix`. The prefix is taken literally (no percent
 * decoding: keys may hold `%`), must be a valid folder name, and gets a
 * trailing `/`; `s3://bucket` and `s3://bucket/` mean the whole bucket.
 */
export function parseS3Url(url: string): S3Location {
  if (!url.startsWith('s3://')) throw usage(url, 'not an s3:// URL');
  const rest = url.slice('s3://'.length);
  const cut = rest.indexOf('/');
  const bucket = cut < 0 ? rest : rest.slice(0, cut);
  let prefix = cut < 0 ? '' : rest.slice(cut + 1);
  if (!BUCKET.test(bucket) || bucket.includes('..')) throw usage(url, `"${bucket}" is not a valid bucket name (3-63 of a-z, 0-9, "." and "-")`);
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  try {
    checkObjectPrefix(prefix);
  } catch (err) {
    throw usage(url, (err as Error).message);
  }
  if (prefix.startsWith('/')) throw usage(url, 'the prefix starts with "/"');
  return { bucket, prefix };
}

export function formatS3Url(location: S3Location): string {
  return `s3://${location.bucket}/${location.prefix}`;
}

/**
 * The standard AWS environment: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL,
 * AWS_REGION or AWS_DEFAULT_REGION (us-east-1 when an endpoint is given
 * without one: radosgw and most S3 servers accept it), AWS_ACCESS_KEY_ID with
 * AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE.
 */
export function s3ConnectionFromEnv(env: NodeJS.ProcessEnv = process.env): S3Connection {
  const value = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const endpoint = value('AWS_ENDPOINT_URL_S3') ?? value('AWS_ENDPOINT_URL');
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/.test(endpoint))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `AWS_ENDPOINT_URL ${JSON.stringify(endpoint)} is not an http:// or https:// URL`, {
      details: { endpoint },
    });
  const region = value('AWS_REGION') ?? value('AWS_DEFAULT_REGION') ?? (endpoint !== undefined ? 'us-east-1' : undefined);
  const accessKeyId = value('AWS_ACCESS_KEY_ID');
  const secretAccessKey = value('AWS_SECRET_ACCESS_KEY');
  const sessionToken = value('AWS_SESSION_TOKEN');
  const profile = value('AWS_PROFILE');
  return {
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(region !== undefined ? { region } : {}),
    ...(accessKeyId !== undefined && secretAccessKey !== undefined
      ? { credentials: { accessKeyId, secretAccessKey, ...(sessionToken !== undefined ? { sessionToken } : {}) } }
      : {}),
    ...(profile !== undefined ? { profile } : {}),
  };
}
