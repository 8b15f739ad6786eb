// The S3 store's pure parts: s3:// URLs, the AWS environment, and the mapping of S3 and SDK errors to stable codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLifeboatError, LifeboatError, type ErrorCode } from '../src/core/errors.js';
import { parseS3Url, s3ConnectionFromEnv } from '../src/objects/s3-config.js';
import { fromS3Error, isRetryable } from '../src/objects/s3-errors.js';

test('s3:// URLs: bucket and prefix (taken literally, ending in /); malformed ones are LFB_ERR_INVALID_ARGUMENT', () => {
  assert.deepEqual(parseS3Url('s3://backups'), { bucket: 'backups', prefix: '' });
  assert.deepEqual(parseS3Url('s3://backups/'), { bucket: 'backups', prefix: '' });
  assert.deepEqual(parseS3Url('s3://backups/site-a/repo'), { bucket: 'backups', prefix: 'site-a/repo/' });
  assert.deepEqual(parseS3Url('s3://b.example-1/p%41/'), { bucket: 'b.example-1', prefix: 'p%41/' });
  for (const bad of [
    'backups',
    'http://x/y',
    's3://',
    's3://ab',
    's3://Upper',
    's3://under_score',
    's3://a..b',
    's3://-dash',
    's3://b/../x',
    's3://bucket//x',
    's3://bucket/a\u0000',
  ]) {
    assert.throws(
      () => parseS3Url(bad),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_INVALID_ARGUMENT') && e.message.includes('s3://<bucket>/<prefix>'),
      bad,
    );
  }
});

test('the AWS environment: endpoint (the S3-specific one first), region (us-east-1 with an endpoint), keys, profile', () => {
  assert.deepEqual(s3ConnectionFromEnv({}), {});
  assert.deepEqual(s3ConnectionFromEnv({ AWS_ENDPOINT_URL: 'http://127.0.0.1:7480', AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' }), {
    endpoint: 'http://127.0.0.1:7480',
    region: 'us-east-1',
    credentials: { accessKeyId: 'k', secretAccessKey: 's' },
  });
  assert.deepEqual(
    s3ConnectionFromEnv({
      AWS_ENDPOINT_URL: 'http://a',
      AWS_ENDPOINT_URL_S3: 'https://b',
      AWS_DEFAULT_REGION: 'eu-west-1',
      AWS_PROFILE: 'backup',
      AWS_ACCESS_KEY_ID: 'k',
    }),
    { endpoint: 'https://b', region: 'eu-west-1', profile: 'backup' },
  );
  assert.equal(s3ConnectionFromEnv({ AWS_REGION: 'eu-central-1', AWS_DEFAULT_REGION: 'x' }).region, 'eu-central-1');
  assert.throws(
    () => s3ConnectionFromEnv({ AWS_ENDPOINT_URL: '127.0.0.1:7480' }),
    (e: unknown) => isLifeboatError(e, 'LFB_ERR_INVALID_ARGUMENT'),
  );
});

const ctx = { op: 'get', target: 's3://b/k', endpoint: 'http://127.0.0.1:1', timeoutMs: 2500 };
function sdkError(name: string, status?: number, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${name} happened`), { name, ...(status !== undefined ? { $metadata: { httpStatusCode: status } } : {}), ...extra });
}

test('fromS3Error: every class of S3 and SDK failure gets its stable code, and the message names the call', () => {
  const cases: [Error, ErrorCode][] = [
    [sdkError('TimeoutError'), 'LFB_ERR_STORE_TIMEOUT'],
    [sdkError('TimeoutError', undefined, { code: 'ETIMEDOUT' }), 'LFB_ERR_STORE_TIMEOUT'],
    [sdkError('AbortError'), 'LFB_ERR_STORE_TIMEOUT'],
    // The SDK names a reset TimeoutError: the errno wins.
    [sdkError('TimeoutError', undefined, { code: 'ECONNRESET' }), 'LFB_ERR_STORE_UNAVAILABLE'],
    [sdkError('Error', undefined, { code: 'ECONNREFUSED' }), 'LFB_ERR_STORE_UNAVAILABLE'],
    [sdkError('Error', undefined, { code: 'ENOTFOUND' }), 'LFB_ERR_STORE_UNAVAILABLE'],
    [sdkError('SlowDown', 503), 'LFB_ERR_STORE_UNAVAILABLE'],
    [sdkError('InternalError', 500), 'LFB_ERR_STORE_UNAVAILABLE'],
    [sdkError('PreconditionFailed', 412), 'LFB_ERR_OBJECT_EXISTS'],
    [sdkError('NoSuchKey', 404), 'LFB_ERR_OBJECT_NOT_FOUND'],
    [sdkError('NotFound', 404), 'LFB_ERR_OBJECT_NOT_FOUND'],
    [sdkError('NoSuchBucket', 404), 'LFB_ERR_OBJECT_NOT_FOUND'],
    [sdkError('QuotaExceeded', 403), 'LFB_ERR_NO_SPACE'],
    [sdkError('AccessDenied', 403), 'LFB_ERR_STORE_DENIED'],
    [sdkError('SignatureDoesNotMatch', 403), 'LFB_ERR_STORE_DENIED'],
    [sdkError('InvalidAccessKeyId', 403), 'LFB_ERR_STORE_DENIED'],
    [sdkError('CredentialsProviderError'), 'LFB_ERR_STORE_DENIED'],
    [sdkError('InvalidBucketState', 409), 'LFB_ERR_IMMUTABLE_UNSUPPORTED'],
    [sdkError('InvalidObjectName', 400), 'LFB_ERR_INVALID_ARGUMENT'],
    [sdkError('BadDigest', 400), 'LFB_ERR_IO'],
  ];
  for (const [err, code] of cases) {
    const mapped = fromS3Error(err, ctx);
    assert.equal(mapped.code, code, `${err.name} ${JSON.stringify((err as { $metadata?: unknown }).$metadata)} ${String((err as { code?: string }).code)}`);
    assert.ok(mapped.message.startsWith('get s3://b/k: '), mapped.message);
    assert.equal(mapped.cause, err);
  }
  assert.match(fromS3Error(sdkError('TimeoutError'), ctx).message, /sent nothing for 2\.5 s/);
  const own = new LifeboatError('LFB_ERR_IMMUTABLE', 'kept');
  assert.equal(fromS3Error(own, ctx), own, 'a LifeboatError passes through');
});

test('isRetryable: resets and 5xx are tried again; timeouts and 4xx never', () => {
  assert.equal(isRetryable(sdkError('TimeoutError', undefined, { code: 'ECONNRESET' })), true);
  assert.equal(isRetryable(sdkError('SlowDown', 503)), true);
  assert.equal(isRetryable(sdkError('InternalError', 500)), true);
  assert.equal(isRetryable(sdkError('TimeoutError')), false);
  assert.equal(isRetryable(sdkError('PreconditionFailed', 412)), false);
  assert.equal(isRetryable(sdkError('AccessDenied', 403)), false);
  assert.equal(isRetryable(sdkError('NoSuchKey', 404)), false);
  // AWS's answer to a create-only put racing another on one key: one of them has won when asked again.
  assert.equal(isRetryable(sdkError('ConditionalRequestConflict', 409)), true);
});

test('fromS3Error: a 409 ConditionalRequestConflict left after retries is a busy store, not an unreachable one; a bucket without an object-lock configuration (404) is LFB_ERR_IMMUTABLE_UNSUPPORTED', () => {
  const conflict = fromS3Error(sdkError('ConditionalRequestConflict', 409), ctx);
  assert.equal(conflict.code, 'LFB_ERR_STORE_UNAVAILABLE');
  assert.doesNotMatch(conflict.message, /cannot reach/);
  assert.match(conflict.message, /409 ConditionalRequestConflict/);
  assert.equal(fromS3Error(sdkError('ObjectLockConfigurationNotFoundError', 404), ctx).code, 'LFB_ERR_IMMUTABLE_UNSUPPORTED');
});
