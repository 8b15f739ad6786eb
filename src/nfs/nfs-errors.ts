import { assertNever, isLifeboatError } from '../core/errors.js';

/** nfsstat3 (RFC 1813 §2.6), spelled as in the RFC. */
export const NFS3_OK = 0;
export const NFS3ERR_PERM = 1;
export const NFS3ERR_NOENT = 2;
export const NFS3ERR_IO = 5;
export const NFS3ERR_ACCES = 13;
export const NFS3ERR_EXIST = 17;
export const NFS3ERR_XDEV = 18;
export const NFS3ERR_NOTDIR = 20;
export const NFS3ERR_ISDIR = 21;
export const NFS3ERR_INVAL = 22;
export const NFS3ERR_FBIG = 27;
export const NFS3ERR_NOSPC = 28;
export const NFS3ERR_ROFS = 30;
export const NFS3ERR_NAMETOOLONG = 63;
export const NFS3ERR_NOTEMPTY = 66;
export const NFS3ERR_STALE = 70;
export const NFS3ERR_BADHANDLE = 10001;
export const NFS3ERR_NOT_SYNC = 10002;
export const NFS3ERR_BAD_COOKIE = 10003;
export const NFS3ERR_NOTSUPP = 10004;
export const NFS3ERR_TOOSMALL = 10005;
export const NFS3ERR_SERVERFAULT = 10006;

/** A file system operation's NFS failure. File systems throw it; procedures turn it into a reply. */
export class NfsError extends Error {
  override readonly name = 'NfsError';
  constructor(
    readonly status: number,
    message = `nfsstat3 ${status}`,
  ) {
    super(message);
  }
}

/** errno → nfsstat3, for errors of the local file system (RFC 1813 §2.6 names the errno each status stands for). */
const ERRNO_STATUS: Readonly<Record<string, number>> = {
  EPERM: NFS3ERR_PERM,
  ENOENT: NFS3ERR_NOENT,
  EIO: NFS3ERR_IO,
  EACCES: NFS3ERR_ACCES,
  EEXIST: NFS3ERR_EXIST,
  EXDEV: NFS3ERR_XDEV,
  ENOTDIR: NFS3ERR_NOTDIR,
  EISDIR: NFS3ERR_ISDIR,
  EINVAL: NFS3ERR_INVAL,
  EFBIG: NFS3ERR_FBIG,
  ENOSPC: NFS3ERR_NOSPC,
  EDQUOT: NFS3ERR_NOSPC,
  EROFS: NFS3ERR_ROFS,
  ENAMETOOLONG: NFS3ERR_NAMETOOLONG,
  ENOTEMPTY: NFS3ERR_NOTEMPTY,
  ESTALE: NFS3ERR_STALE,
};

/** The errno an error carries: its own `code`, a LifeboatError's `details.errno`. */
function errnoOf(err: unknown): string | undefined {
  if (isLifeboatError(err)) {
    const e = err.details['errno'];
    return typeof e === 'string' ? e : undefined;
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Maps any error to nfsstat3, once, at this edge (the one mapping of the NFS
 * protocol; NBD has its own). A full disk is NOSPC wherever it is found (a
 * LifeboatError LFB_ERR_NO_SPACE, ENOSPC or EDQUOT, also as the cause of a
 * wrapped error), so a hypervisor can pause the VM instead of failing it. A
 * damaged backup block and anything unknown are IO: the server's problem,
 * never wrong bytes.
 */
export function nfsStatusOf(err: unknown): number {
  if (err instanceof NfsError) return err.status;
  // A LifeboatError of the I/O kind may wrap the errno that says more (LFB_ERR_IO caused by ENOSPC).
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof NfsError) return e.status;
    if (isLifeboatError(e)) {
      switch (e.category) {
        case 'NoSpace':
          return NFS3ERR_NOSPC;
        case 'Invalid':
          return NFS3ERR_INVAL;
        case 'Unsupported':
          return NFS3ERR_NOTSUPP;
        case 'Corrupt':
          return NFS3ERR_IO;
        case 'Permanent':
        case 'Transient': {
          const status = ERRNO_STATUS[errnoOf(e) ?? ''];
          if (status !== undefined) return status;
          continue;
        }
        // Behind a handle the client holds: a missing or conflicting backup file is the server's problem.
        case 'NotFound':
        case 'Conflict':
        case 'Aborted':
          return NFS3ERR_IO;
        default:
          return assertNever(e.category);
      }
    }
    const status = ERRNO_STATUS[errnoOf(e) ?? ''];
    if (status !== undefined) return status;
    if (typeof e !== 'object' || e === null) break;
  }
  return NFS3ERR_IO;
}
