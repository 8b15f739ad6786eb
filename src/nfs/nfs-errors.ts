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

/** Maps any error to nfsstat3, once, at this edge. */
export function nfsStatusOf(err: unknown): number {
  if (err instanceof NfsError) return err.status;
  if (isLifeboatError(err)) {
    switch (err.category) {
      case 'NotFound':
        return NFS3ERR_NOENT;
      case 'Invalid':
        return NFS3ERR_INVAL;
      case 'Conflict':
        return NFS3ERR_EXIST;
      case 'Unsupported':
        return NFS3ERR_NOTSUPP;
      case 'NoSpace':
        return NFS3ERR_NOSPC;
      case 'Corrupt':
      case 'Permanent':
      case 'Transient':
      case 'Aborted':
        return NFS3ERR_IO;
      default:
        return assertNever(err.category);
    }
  }
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (errno) {
    case 'ENOENT':
      return NFS3ERR_NOENT;
    case 'EEXIST':
      return NFS3ERR_EXIST;
    case 'ENOTDIR':
      return NFS3ERR_NOTDIR;
    case 'EISDIR':
      return NFS3ERR_ISDIR;
    case 'ENOTEMPTY':
      return NFS3ERR_NOTEMPTY;
    case 'ENOSPC':
      return NFS3ERR_NOSPC;
    case 'EACCES':
    case 'EPERM':
      return NFS3ERR_ACCES;
    case 'EINVAL':
      return NFS3ERR_INVAL;
    case 'ENAMETOOLONG':
      return NFS3ERR_NAMETOOLONG;
    default:
      return NFS3ERR_IO;
  }
}
