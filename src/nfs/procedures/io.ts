import { unpinned } from '../../core/pinned-bytes.js';
import { NFS3ERR_FBIG, NFS3ERR_INVAL, NFS3ERR_ISDIR, NfsError } from '../nfs-errors.js';
import { MAX_FILE_SIZE, readHandle, readOffset, writePostOpAttr, writeWcc } from '../wire.js';
import { MAX_IO, attrsOrNone, respond, type NfsProcedure } from './context.js';

const UNSTABLE = 0;
const FILE_SYNC = 2;

/** RFC 1813 §3.3.6 READ. eof is set whenever the read reaches the end (ESXi relies on it). */
export const read: NfsProcedure = async (a, out, ctx) => {
  const h = readHandle(a);
  const offset = readOffset(a);
  const count = Math.min(a.u32('count'), MAX_IO);
  a.end();
  await respond(
    ctx,
    out,
    async () => {
      const attr = await ctx.fs.getattr(h);
      if (attr.type === 'dir') throw new NfsError(NFS3ERR_ISDIR);
      if (attr.type !== 'file') throw new NfsError(NFS3ERR_INVAL);
      const n = Math.max(0, Math.min(count, attr.size - offset));
      // Lent bytes (a block of the memory cache) go back once the reply is sent.
      const lent = n === 0 ? unpinned(Buffer.alloc(0)) : ctx.fs.readPinned ? await ctx.fs.readPinned(h, offset, n) : unpinned(await ctx.fs.read(h, offset, n));
      const eof = offset + lent.length >= attr.size;
      return (w) => {
        w.onSent(lent.release);
        writePostOpAttr(w, attr, ctx.fsid);
        w.u32(lent.length).bool(eof).opaqueParts(lent.parts, lent.length);
      };
    },
    async (w) => writePostOpAttr(w, await attrsOrNone(ctx, h), ctx.fsid),
  );
};

/**
 * §3.3.7 WRITE. UNSTABLE writes are answered UNSTABLE and made durable by
 * COMMIT; DATA_SYNC and FILE_SYNC are durable before the reply (FILE_SYNC).
 */
export const write: NfsProcedure = async (a, out, ctx) => {
  const h = readHandle(a);
  const offset = readOffset(a);
  const count = a.u32('count');
  const stable = a.u32('stable_how');
  const data = a.opaque(MAX_IO, 'data');
  a.end();
  await respond(
    ctx,
    out,
    async () => {
      if (count !== data.length || stable > FILE_SYNC) throw new NfsError(NFS3ERR_INVAL, 'count does not match the data');
      if (offset + data.length > MAX_FILE_SIZE) throw new NfsError(NFS3ERR_FBIG, 'write past the largest file');
      const attr = await ctx.fs.getattr(h);
      if (attr.type === 'dir') throw new NfsError(NFS3ERR_ISDIR);
      if (attr.type !== 'file') throw new NfsError(NFS3ERR_INVAL);
      await ctx.fs.write(h, offset, Buffer.from(data), stable !== UNSTABLE);
      const after = await ctx.fs.getattr(h);
      return (w) => {
        writeWcc(w, after, ctx.fsid);
        w.u32(data.length)
          .u32(stable === UNSTABLE ? UNSTABLE : FILE_SYNC)
          .fixedOpaque(ctx.writeVerifier);
      };
    },
    async (w) => writeWcc(w, await attrsOrNone(ctx, h), ctx.fsid),
  );
};

/** §3.3.21 COMMIT: everything written to the file is durable when this answers. */
export const commit: NfsProcedure = async (a, out, ctx) => {
  const h = readHandle(a);
  readOffset(a);
  a.u32('count');
  a.end();
  await respond(
    ctx,
    out,
    async () => {
      await ctx.fs.commit(h);
      const after = await ctx.fs.getattr(h);
      return (w) => {
        writeWcc(w, after, ctx.fsid);
        w.fixedOpaque(ctx.writeVerifier);
      };
    },
    async (w) => writeWcc(w, await attrsOrNone(ctx, h), ctx.fsid),
  );
};
