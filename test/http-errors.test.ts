/** The one mapping from Lifeboat's error codes (and fastify's own errors) to HTTP statuses and {code, message} bodies. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_CODES, LifeboatError, type ErrorCode } from '../src/core/errors.js';
import { errorReply, httpStatusFor } from '../src/service/http/errors.js';

test('every error code has a status that fits its category; the named ones as the API promises', () => {
  const byCategory: Record<string, number[]> = {
    NotFound: [404, 500, 503],
    Conflict: [409],
    Invalid: [401, 403, 422],
    NoSpace: [507],
    Transient: [429, 503],
  };
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const status = httpStatusFor(new LifeboatError(code, 'x'));
    assert.ok((byCategory[ERROR_CODES[code]] ?? [500]).includes(status), `${code} (${ERROR_CODES[code]}) → ${status}`);
  }
  const expected: [ErrorCode, number][] = [
    ['LFB_ERR_UNAUTHENTICATED', 401],
    ['LFB_ERR_FORBIDDEN', 403],
    ['LFB_ERR_JOB_NOT_FOUND', 404],
    ['LFB_ERR_RUN_NOT_FOUND', 404],
    ['LFB_ERR_ROUTE_NOT_FOUND', 404],
    ['LFB_ERR_JOB_LOCKED', 409],
    ['LFB_ERR_JOB_EXISTS', 409],
    ['LFB_ERR_INVALID_ARGUMENT', 422],
    ['LFB_ERR_USAGE', 422],
    ['LFB_ERR_RATE_LIMITED', 429],
    ['LFB_ERR_NO_SPACE', 507],
    ['LFB_ERR_BLOCK_CORRUPT', 500],
    ['LFB_ERR_TOOL_MISSING', 500],
    ['LFB_ERR_INTERNAL', 500],
  ];
  for (const [code, status] of expected) assert.equal(httpStatusFor(new LifeboatError(code, 'x')), status, code);
});

test("fastify's errors: schema failures and bad JSON are 422 INVALID_ARGUMENT, 413 and 415 keep their status, anything else is a 500 that reveals nothing", () => {
  const validation = Object.assign(new Error('body/retainPoints must be >= 1'), { validation: [{}], statusCode: 400 });
  assert.deepEqual(errorReply(validation), {
    status: 422,
    body: { code: 'LFB_ERR_INVALID_ARGUMENT', message: 'body/retainPoints must be >= 1' },
    internal: false,
  });
  const badJson = Object.assign(new SyntaxError('Unexpected end of JSON input'), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' });
  assert.equal(errorReply(badJson).status, 422);
  assert.equal(errorReply(Object.assign(new Error('too large'), { statusCode: 413 })).status, 413);
  assert.equal(errorReply(Object.assign(new Error('unsupported'), { statusCode: 415 })).status, 415);
  const bug = errorReply(new TypeError("Cannot read properties of undefined (reading 'secret path /etc/x')"));
  assert.equal(bug.status, 500);
  assert.equal(bug.internal, true);
  assert.equal(bug.body.code, 'LFB_ERR_INTERNAL');
  assert.doesNotMatch(bug.body.message, /secret|etc/);
  const lb = errorReply(new LifeboatError('LFB_ERR_NO_SPACE', 'no space left'));
  assert.deepEqual(lb, { status: 507, body: { code: 'LFB_ERR_NO_SPACE', message: 'no space left' }, internal: false });
});
