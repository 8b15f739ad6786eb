/**
 * One error type for the whole code base. Every failure that reaches a user
 * carries a stable code from ERROR_CODES; docs/errors.md documents each one and
 * a test checks that the two agree in both directions.
 */

export const ERROR_CATEGORIES = ['NotFound', 'Invalid', 'Conflict', 'Unsupported', 'Transient', 'Permanent', 'Corrupt', 'NoSpace', 'Aborted'] as const;
export type ErrorCategory = (typeof ERROR_CATEGORIES)[number];

/** code → category. Codes are public API: never rename one, only add. */
export const ERROR_CODES = {
  LFB_ERR_USAGE: 'Invalid',
  LFB_ERR_INVALID_ARGUMENT: 'Invalid',
  LFB_ERR_REPO_NOT_FOUND: 'NotFound',
  LFB_ERR_REPO_EXISTS: 'Conflict',
  LFB_ERR_REPO_VERSION: 'Unsupported',
  LFB_ERR_REPO_CORRUPT: 'Corrupt',
  LFB_ERR_IMMUTABLE: 'Conflict',
  LFB_ERR_IMMUTABLE_UNSUPPORTED: 'Unsupported',
  LFB_ERR_JOB_NOT_FOUND: 'NotFound',
  LFB_ERR_JOB_EXISTS: 'Conflict',
  LFB_ERR_JOB_LOCKED: 'Conflict',
  LFB_ERR_JOB_CORRUPT: 'Corrupt',
  LFB_ERR_JOB_HAS_POINTS: 'Conflict',
  LFB_ERR_POINT_HELD: 'Conflict',
  LFB_ERR_POINT_NOT_FOUND: 'NotFound',
  LFB_ERR_POINT_AMBIGUOUS: 'Invalid',
  LFB_ERR_NO_POINTS: 'NotFound',
  LFB_ERR_CHAIN_BROKEN: 'Corrupt',
  LFB_ERR_FILE_TRUNCATED: 'Corrupt',
  LFB_ERR_FILE_CORRUPT: 'Corrupt',
  LFB_ERR_FILE_VERSION: 'Unsupported',
  LFB_ERR_BLOCK_CORRUPT: 'Corrupt',
  LFB_ERR_DISK_NOT_FOUND: 'NotFound',
  LFB_ERR_DISK_READ: 'Permanent',
  LFB_ERR_TARGET_EXISTS: 'Conflict',
  LFB_ERR_NO_SPACE: 'NoSpace',
  LFB_ERR_IO: 'Permanent',
  LFB_ERR_TOOL_MISSING: 'NotFound',
  LFB_ERR_TOOL_FAILED: 'Permanent',
  LFB_ERR_SERVER_NOT_RUNNING: 'NotFound',
  LFB_ERR_SERVER_NO_ANSWER: 'Transient',
  LFB_ERR_SERVER_RUNNING: 'Conflict',
  LFB_ERR_STANDBY: 'Conflict',
  LFB_ERR_NO_MOVER: 'Transient',
  LFB_ERR_MOVER_LOST: 'Transient',
  LFB_ERR_MOVER_TASK_NOT_FOUND: 'NotFound',
  LFB_ERR_MOVER_NAME_IN_USE: 'Conflict',
  LFB_ERR_PORT_IN_USE: 'Conflict',
  LFB_ERR_VM: 'Permanent',
  LFB_ERR_MIGRATION: 'Permanent',
  LFB_ERR_SESSION_NOT_FOUND: 'NotFound',
  LFB_ERR_SESSION_EXISTS: 'Conflict',
  LFB_ERR_CBT: 'Permanent',
  LFB_ERR_CBT_UNSUPPORTED: 'Invalid',
  LFB_ERR_SOURCE_CHANGED: 'Conflict',
  LFB_ERR_INTERRUPTED: 'Aborted',
  LFB_ERR_CLIENTS_ATTACHED: 'Conflict',
  LFB_ERR_UNAUTHENTICATED: 'Invalid',
  LFB_ERR_FORBIDDEN: 'Invalid',
  LFB_ERR_RATE_LIMITED: 'Transient',
  LFB_ERR_CATALOG: 'Permanent',
  LFB_ERR_CATALOG_VERSION: 'Unsupported',
  LFB_ERR_RUN_NOT_FOUND: 'NotFound',
  LFB_ERR_USER_NOT_FOUND: 'NotFound',
  LFB_ERR_USER_EXISTS: 'Conflict',
  LFB_ERR_TOKEN_NOT_FOUND: 'NotFound',
  LFB_ERR_ROUTE_NOT_FOUND: 'NotFound',
  LFB_ERR_NO_SCREEN: 'Conflict',
  LFB_ERR_SCREEN_BUSY: 'Conflict',
  LFB_ERR_SUREBACKUP_FAILED: 'Corrupt',
  LFB_ERR_LAB: 'Permanent',
  LFB_ERR_SANDBOX_NOT_FOUND: 'NotFound',
  LFB_ERR_SANDBOX_EXISTS: 'Conflict',
  LFB_ERR_REPORT_NOT_FOUND: 'NotFound',
  LFB_ERR_SCREENSHOT_NOT_FOUND: 'NotFound',
  LFB_ERR_NO_FILESYSTEM: 'NotFound',
  LFB_ERR_FS_NOT_FOUND: 'NotFound',
  LFB_ERR_FILE_NOT_FOUND: 'NotFound',
  LFB_ERR_MOUNT_NOT_FOUND: 'NotFound',
  LFB_ERR_GUESTFS: 'Permanent',
  LFB_ERR_PASSWORD_REQUIRED: 'Invalid',
  LFB_ERR_WRONG_PASSWORD: 'Invalid',
  LFB_ERR_KEY_MISMATCH: 'Conflict',
  LFB_ERR_OBJECT_EXISTS: 'Conflict',
  LFB_ERR_OBJECT_NOT_FOUND: 'NotFound',
  LFB_ERR_STORE_TIMEOUT: 'Transient',
  LFB_ERR_STORE_UNAVAILABLE: 'Transient',
  LFB_ERR_STORE_DENIED: 'Permanent',
  LFB_ERR_STORE_UNSUPPORTED: 'Unsupported',
  LFB_ERR_NO_CAPACITY_TIER: 'NotFound',
  LFB_ERR_ON_CAPACITY_TIER: 'Conflict',
  LFB_ERR_TIER_MISMATCH: 'Corrupt',
  LFB_ERR_INTERNAL: 'Permanent',
} as const satisfies Record<string, ErrorCategory>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class LifeboatError extends Error {
  readonly code: ErrorCode;
  readonly category: ErrorCategory;
  /** Structured facts (file, block, offset…) for logs and --json output. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LifeboatError';
    this.code = code;
    this.category = ERROR_CODES[code];
    this.details = opts.details ?? {};
  }
}

/** A LifeboatError from a code and message that came over a wire (a peer's JSON): an unknown code becomes `fallback`. */
export function errorFromCode(code: string | undefined, message: string, fallback: ErrorCode): LifeboatError {
  return new LifeboatError(code !== undefined && code in ERROR_CODES ? (code as ErrorCode) : fallback, message);
}

export function isLifeboatError(err: unknown, code?: ErrorCode): err is LifeboatError {
  return err instanceof LifeboatError && (code === undefined || err.code === code);
}

export function assertNever(x: never): never {
  throw new LifeboatError('LFB_ERR_INTERNAL', `unexpected value ${String(x)}`);
}

/** Turns an errno-style error from node:fs into our code, naming what we were doing. */
export function fromFsError(err: unknown, doing: string, path: string): LifeboatError {
  if (err instanceof LifeboatError) return err;
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  const why = err instanceof Error ? err.message : String(err);
  switch (errno) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new LifeboatError('LFB_ERR_NO_SPACE', `${doing} ${path}: no space left on device; free space and run again`, { cause: err, details: { path } });
    case 'ENOENT':
      return new LifeboatError('LFB_ERR_IO', `${doing} ${path}: no such file or directory`, { cause: err, details: { path, errno } });
    default:
      return new LifeboatError('LFB_ERR_IO', `${doing} ${path}: ${why}`, { cause: err, details: { path, errno } });
  }
}

/**
 * Marks a promise that will be awaited later (a read-ahead or pipeline queue)
 * as handled now, so that if it rejects before its turn Node does not treat
 * the rejection as unhandled and end the process. The rejection still reaches
 * whoever awaits the returned (same) promise.
 */
export function queued<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}
