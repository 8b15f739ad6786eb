import { NFS3ERR_NOTSUPP } from '../nfs-errors.js';
import { readCreateHow, readHandle, readName, readNewName, readSattr, writePostOpAttr, writePostOpFh, writeWcc } from '../wire.js';
import { attrsOrNone, respond, type NfsContext, type NfsProcedure } from './context.js';
import type { XdrWriter } from '../../rpc/xdr.js';

/** RFC 1813 §3.3.3 LOOKUP (including "." and ".."). */
export const lookup: NfsProcedure = async (a, out, ctx) => {
  const dir = readHandle(a);
  const name = readName(a);
  a.end();
  await respond(
    ctx,
    out,
    async () => {
      const h = await ctx.fs.lookup(dir, name);
      const [attr, dirAttr] = await Promise.all([ctx.fs.getattr(h), attrsOrNone(ctx, dir)]);
      return (w) => {
        w.opaque(h);
        writePostOpAttr(w, attr, ctx.fsid);
        writePostOpAttr(w, dirAttr, ctx.fsid);
      };
    },
    async (w) => writePostOpAttr(w, await attrsOrNone(ctx, dir), ctx.fsid),
  );
};

/** The reply of CREATE and MKDIR: the new handle, its attributes, the directory's wcc. */
async function created(ctx: NfsContext, dir: Buffer, h: Buffer): Promise<(w: XdrWriter) => void> {
  const [attr, dirAttr] = await Promise.all([ctx.fs.getattr(h), attrsOrNone(ctx, dir)]);
  return (w) => {
    writePostOpFh(w, h);
    writePostOpAttr(w, attr, ctx.fsid);
    writeWcc(w, dirAttr, ctx.fsid);
  };
}

/** §3.3.8 CREATE: UNCHECKED, GUARDED (EXIST if present: ESXi's lock files rely on it), EXCLUSIVE. */
export const create: NfsProcedure = async (a, out, ctx) => {
  const dir = readHandle(a);
  const name = readNewName(a);
  const how = readCreateHow(a);
  a.end();
  await respond(
    ctx,
    out,
    async () => created(ctx, dir, await ctx.fs.create(dir, name, how)),
    async (w) => writeWcc(w, await attrsOrNone(ctx, dir), ctx.fsid),
  );
};

/** §3.3.9 MKDIR. */
export const mkdir: NfsProcedure = async (a, out, ctx) => {
  const dir = readHandle(a);
  const name = readNewName(a);
  const attrs = readSattr(a);
  a.end();
  await respond(
    ctx,
    out,
    async () => created(ctx, dir, await ctx.fs.mkdir(dir, name, attrs)),
    async (w) => writeWcc(w, await attrsOrNone(ctx, dir), ctx.fsid),
  );
};

function removal(op: 'remove' | 'rmdir'): NfsProcedure {
  return async (a, out, ctx) => {
    const dir = readHandle(a);
    const name = readNewName(a);
    a.end();
    await respond(
      ctx,
      out,
      async () => {
        await ctx.fs[op](dir, name);
        const after = await attrsOrNone(ctx, dir);
        return (w) => writeWcc(w, after, ctx.fsid);
      },
      async (w) => writeWcc(w, await attrsOrNone(ctx, dir), ctx.fsid),
    );
  };
}

/** §3.3.12 REMOVE and §3.3.13 RMDIR. */
export const remove = removal('remove');
export const rmdir = removal('rmdir');

/** §3.3.14 RENAME. */
export const rename: NfsProcedure = async (a, out, ctx) => {
  const fromDir = readHandle(a);
  const fromName = readNewName(a);
  const toDir = readHandle(a);
  const toName = readNewName(a);
  a.end();
  const both = async (w: XdrWriter): Promise<void> => {
    const [f, t] = await Promise.all([attrsOrNone(ctx, fromDir), attrsOrNone(ctx, toDir)]);
    writeWcc(w, f, ctx.fsid);
    writeWcc(w, t, ctx.fsid);
  };
  await respond(
    ctx,
    out,
    async () => {
      await ctx.fs.rename(fromDir, fromName, toDir, toName);
      const [f, t] = await Promise.all([attrsOrNone(ctx, fromDir), attrsOrNone(ctx, toDir)]);
      return (w) => {
        writeWcc(w, f, ctx.fsid);
        writeWcc(w, t, ctx.fsid);
      };
    },
    both,
  );
};

/**
 * §3.3.10 SYMLINK, §3.3.11 MKNOD, §3.3.15 LINK: not offered. A datastore
 * needs none of them; NOTSUPP (not PROC_UNAVAIL) is the answer clients expect.
 */
export const symlink: NfsProcedure = async (a, out, ctx) => {
  const dir = readHandle(a);
  out.u32(NFS3ERR_NOTSUPP);
  writeWcc(out, await attrsOrNone(ctx, dir), ctx.fsid);
};
export const mknod = symlink;
export const link: NfsProcedure = async (a, out, ctx) => {
  const file = readHandle(a);
  const dir = readHandle(a);
  out.u32(NFS3ERR_NOTSUPP);
  writePostOpAttr(out, await attrsOrNone(ctx, file), ctx.fsid);
  writeWcc(out, await attrsOrNone(ctx, dir), ctx.fsid);
};
