import type { XdrReader, XdrWriter } from '../../rpc/xdr.js';
import type { NfsAttr, NfsFileSystem } from '../file-system.js';
import { NFS3ERR_IO, NFS3ERR_NOSPC, NFS3ERR_SERVERFAULT, NFS3_OK, nfsStatusOf } from '../nfs-errors.js';

/** What every procedure needs: the file system, the export's fsid, the server's write verifier. */
export interface NfsContext {
  readonly fs: NfsFileSystem;
  readonly fsid: bigint;
  /** One per server start (RFC 1813 §3.3.7): a client that sees it change resends uncommitted writes. */
  readonly writeVerifier: Buffer;
  /** Told of every failure that is the server's problem (NFS3ERR_IO, SERVERFAULT): a damaged block, a full disk. */
  readonly onServerError?: (err: unknown, status: number) => void;
}

export const MAX_IO = 1024 * 1024;

export type NfsProcedure = (args: XdrReader, out: XdrWriter, ctx: NfsContext) => Promise<void>;

/**
 * Runs a procedure body; on failure writes the nfsstat3 and the procedure's
 * failure body (RFC 1813: most failures still carry attributes).
 */
export async function respond(
  ctx: NfsContext,
  out: XdrWriter,
  ok: () => Promise<(w: XdrWriter) => void>,
  fail: (w: XdrWriter) => Promise<void> | void,
): Promise<void> {
  let body: (w: XdrWriter) => void;
  try {
    body = await ok();
  } catch (err) {
    const status = nfsStatusOf(err);
    if (status === NFS3ERR_IO || status === NFS3ERR_SERVERFAULT || status === NFS3ERR_NOSPC) ctx.onServerError?.(err, status);
    out.u32(status);
    await fail(out);
    return;
  }
  out.u32(NFS3_OK);
  body(out);
}

/** Attributes if they can be had (for failure bodies and wcc), else undefined. */
export async function attrsOrNone(ctx: NfsContext, h: Buffer | undefined): Promise<NfsAttr | undefined> {
  if (h === undefined) return undefined;
  try {
    return await ctx.fs.getattr(h);
  } catch {
    return undefined;
  }
}
