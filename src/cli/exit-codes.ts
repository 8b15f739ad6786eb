import { assertNever, type LifeboatError } from '../core/errors.js';

/** Exit codes (docs/errors.md). Mapped once, from the error category. */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, corrupt: 4, conflict: 5, noSpace: 6, locked: 11, aborted: 130 } as const;

export function exitCodeFor(err: LifeboatError): number {
  if (err.code === 'LFB_ERR_JOB_LOCKED') return EXIT.locked;
  switch (err.category) {
    case 'Invalid':
      return EXIT.usage;
    case 'NotFound':
      return EXIT.notFound;
    case 'Corrupt':
      return EXIT.corrupt;
    case 'Conflict':
      return EXIT.conflict;
    case 'NoSpace':
      return EXIT.noSpace;
    case 'Aborted':
      return EXIT.aborted;
    case 'Unsupported':
    case 'Transient':
    case 'Permanent':
      return EXIT.failure;
    default:
      return assertNever(err.category);
  }
}
