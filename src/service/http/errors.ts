/**
 * One mapping from Lifeboat's error codes to HTTP statuses, and one error
 * body for every failure the API answers: `{code, message}`.
 */
import { LifeboatError, type ErrorCode } from '../../core/errors.js';

export interface ErrorBody {
  readonly code: string;
  readonly message: string;
}

/** Codes whose status is not their category's. */
const BY_CODE: Partial<Record<ErrorCode, number>> = {
  LFB_ERR_UNAUTHENTICATED: 401,
  LFB_ERR_FORBIDDEN: 403,
  LFB_ERR_RATE_LIMITED: 429,
  // A missing tool or a stopped server is the server's problem, not a missing resource the client named.
  LFB_ERR_TOOL_MISSING: 500,
  LFB_ERR_SERVER_NOT_RUNNING: 503,
};

export function httpStatusFor(err: LifeboatError): number {
  const byCode = BY_CODE[err.code];
  if (byCode !== undefined) return byCode;
  switch (err.category) {
    case 'NotFound':
      return 404;
    case 'Conflict':
      return 409;
    case 'Invalid':
      return 422;
    case 'NoSpace':
      return 507;
    case 'Transient':
      return 503;
    default:
      return 500;
  }
}

/**
 * What a failure becomes on the wire. Fastify's own errors (a body that fails
 * its schema, JSON that does not parse, a body too large) are bad input: 422
 * with LFB_ERR_INVALID_ARGUMENT, except the few whose status says more (413,
 * 415). Anything else is a bug: 500 with a message that reveals nothing of
 * the server (the whole error goes to the log).
 */
export function errorReply(err: unknown): { status: number; body: ErrorBody; internal: boolean } {
  if (err instanceof LifeboatError) return { status: httpStatusFor(err), body: { code: err.code, message: err.message }, internal: false };
  const fe = err as { validation?: unknown; statusCode?: unknown; message?: unknown; code?: unknown } | null;
  const message = typeof fe?.message === 'string' ? fe.message : 'invalid request';
  if (fe && fe.validation !== undefined) return { status: 422, body: { code: 'LFB_ERR_INVALID_ARGUMENT', message }, internal: false };
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    const kept = status === 413 || status === 415 || status === 429 ? status : 422;
    return { status: kept, body: { code: status === 429 ? 'LFB_ERR_RATE_LIMITED' : 'LFB_ERR_INVALID_ARGUMENT', message }, internal: false };
  }
  return { status: 500, body: { code: 'LFB_ERR_INTERNAL', message: 'internal error; the server log has the details' }, internal: true };
}
