import { isLifeboatError, type ErrorCategory } from '../core/errors.js';
import * as W from './wire.js';

/** A peer broke the protocol in a way that ends its connection (and only that one). */
export class NbdProtocolError extends Error {}

/**
 * errno → NBD error. The protocol defines only a few values; the rest are
 * chosen as qemu-nbd and nbdkit do. ENOTSUP and EOVERFLOW are EINVAL because
 * this server advertises neither fast zero nor DF, the only places they may appear.
 */
const ERRNO_TO_NBD: Readonly<Record<string, number>> = {
  EPERM: W.NBD_EPERM,
  EACCES: W.NBD_EPERM,
  EROFS: W.NBD_EPERM,
  EIO: W.NBD_EIO,
  ENOMEM: W.NBD_ENOMEM,
  // The protocol asks for EDQUOT and EFBIG as ENOSPC.
  ENOSPC: W.NBD_ENOSPC,
  EDQUOT: W.NBD_ENOSPC,
  EFBIG: W.NBD_ENOSPC,
  EINVAL: W.NBD_EINVAL,
  ENOTSUP: W.NBD_EINVAL,
  EOPNOTSUPP: W.NBD_EINVAL,
  EOVERFLOW: W.NBD_EINVAL,
  ESHUTDOWN: W.NBD_ESHUTDOWN,
};

/** Categories that say enough on their own; the others (Permanent, Corrupt...) are EIO unless an errno says more. */
const CATEGORY_TO_NBD: Partial<Record<ErrorCategory, number>> = {
  NoSpace: W.NBD_ENOSPC,
  Invalid: W.NBD_EINVAL,
  Unsupported: W.NBD_EINVAL,
};

/** How far down a chain of causes to look. */
const MAX_CAUSES = 8;

/**
 * The NBD error a client is sent for a failed request, whatever failed: a
 * LifeboatError by its code and category, or by the errno in its details or
 * its causes; a raw errno error by its errno; anything else is NBD_EIO.
 * A full disk must reach the client as NBD_ENOSPC: QEMU's werror=enospc then
 * pauses the VM instead of failing its I/O.
 */
export function nbdErrorOf(err: unknown): number {
  let e: unknown = err;
  for (let depth = 0; depth < MAX_CAUSES && e !== undefined && e !== null; depth++) {
    if (isLifeboatError(e)) {
      if (e.code === 'LFB_ERR_NO_SPACE') return W.NBD_ENOSPC;
      const errno = e.details['errno'];
      if (typeof errno === 'string' && errno in ERRNO_TO_NBD) return ERRNO_TO_NBD[errno]!;
      const byCategory = CATEGORY_TO_NBD[e.category];
      if (byCategory !== undefined) return byCategory;
    } else {
      const errno = (e as NodeJS.ErrnoException).code;
      if (typeof errno === 'string' && errno in ERRNO_TO_NBD) return ERRNO_TO_NBD[errno]!;
    }
    e = e instanceof Error ? e.cause : undefined;
  }
  return W.NBD_EIO;
}
