import { NFS3ERR_NOT_SYNC, NfsError } from '../nfs-errors.js';
import { MAX_FILE_SIZE, readHandle, readSattr, writeFattr, writePostOpAttr, writeWcc } from '../wire.js';
import type { XdrWriter } from '../../rpc/xdr.js';
import { MAX_IO, attrsOrNone, respond, type NfsContext, type NfsProcedure } from './context.js';
import { MAX_DIR_REPLY } from './directories.js';

/** RFC 1813 §3.3.1 GETATTR: the hot path of every client (ESXi's heartbeat). */
export const getattr: NfsProcedure = async (a, out, ctx) => {
  const h = readHandle(a);
  a.end();
  await respond(
    ctx,
    out,
    async () => {
      const attr = await ctx.fs.getattr(h);
      return (w) => writeFattr(w, attr, ctx.fsid);
    },
    () => undefined,
  );
};

/** §3.3.2 SETATTR, with the optional ctime guard (NOT_SYNC on mismatch). */
export const setattr: NfsProcedure = async (a, out, ctx) => {
  const h = readHandle(a);
  const set = readSattr(a);
  const guarded = a.bool('guard');
  const guardCtime = guarded ? a.u32('ctime s') * 1000 + Math.floor(a.u32('ctime ns') / 1e6) : undefined;
  a.end();
  await respond(
    ctx,
    out,
    async () => {
      if (guardCtime !== undefined && Math.floor((await ctx.fs.getattr(h)).ctimeMs) !== guardCtime) throw new NfsError(NFS3ERR_NOT_SYNC);
      await ctx.fs.setattr(h, set);
      const after = await ctx.fs.getattr(h);
      return (w) => writeWcc(w, after, ctx.fsid);
    },
    async (w) => writeWcc(w, await attrsOrNone(ctx, h), ctx.fsid),
  );
};

export const ACCESS3_READ = 0x1;
export const ACCESS3_LOOKUP = 0x2;
export const ACCESS3_MODIFY = 0x4;
export const ACCESS3_EXTEND = 0x8;
export const ACCESS3_DELETE = 0x10;
export const ACCESS3_EXECUTE = 0x20;

/**
 * §3.3.4 ACCESS: exactly the bits asked for that are allowed (libnfs fails an
 * open unless the answer equals what it asked). Everyone is treated as the
 * owner: a datastore must give its hypervisor (uid 0) full access.
 */
export const access: NfsProcedure = async (a, out, ctx) => {
  const h = readHandle(a);
  const asked = a.u32('access');
  a.end();
  await respond(
    ctx,
    out,
    async () => {
      const attr = await ctx.fs.getattr(h);
      const allowed =
        attr.type === 'dir'
          ? ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE
          : ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE | ACCESS3_EXECUTE;
      return (w) => {
        writePostOpAttr(w, attr, ctx.fsid);
        w.u32(asked & allowed);
      };
    },
    async (w) => writePostOpAttr(w, await attrsOrNone(ctx, h), ctx.fsid),
  );
};

/**
 * The shape of FSSTAT, FSINFO, PATHCONF and READLINK: one handle in; out, the
 * object's post-op attributes then a body (or, on failure, the attributes only).
 */
function attributesAnd(body: (ctx: NfsContext, h: Buffer) => Promise<(w: XdrWriter) => void>): NfsProcedure {
  return async (a, out, ctx) => {
    const h = readHandle(a);
    a.end();
    await respond(
      ctx,
      out,
      async () => {
        const [attr, more] = await Promise.all([ctx.fs.getattr(h), body(ctx, h)]);
        return (w) => {
          writePostOpAttr(w, attr, ctx.fsid);
          more(w);
        };
      },
      async (w) => writePostOpAttr(w, await attrsOrNone(ctx, h), ctx.fsid),
    );
  };
}

/** §3.3.18 FSSTAT: space of the storage behind the export (ESXi needs room for .vswp). */
export const fsstat = attributesAnd(async (ctx, h) => {
  const s = await ctx.fs.fsstat(h);
  return (w) => w.u64(s.tbytes).u64(s.fbytes).u64(s.abytes).u64(s.tfiles).u64(s.ffiles).u64(s.afiles).u32(0);
});

export const FSF3_HOMOGENEOUS = 0x8;
export const FSF3_CANSETTIME = 0x10;

/** §3.3.19 FSINFO: 1 MiB reads and writes (the Linux and libnfs maximum). */
export const fsinfo = attributesAnd(async () => (w) => {
  w.u32(MAX_IO).u32(MAX_IO).u32(4096); // rtmax rtpref rtmult
  w.u32(MAX_IO).u32(MAX_IO).u32(4096); // wtmax wtpref wtmult
  w.u32(MAX_DIR_REPLY); // dtpref: the largest directory reply we send
  w.u64(MAX_FILE_SIZE); // maxfilesize: 1 PiB
  w.u32(0).u32(1_000_000); // time_delta: 1 ms
  w.u32(FSF3_HOMOGENEOUS | FSF3_CANSETTIME);
});

/** §3.3.20 PATHCONF: linkmax, name_max, no_trunc, chown_restricted, case_insensitive, case_preserving. */
export const pathconf = attributesAnd(async () => (w) => {
  w.u32(1).u32(255).bool(true).bool(true).bool(false).bool(true);
});

/** §3.3.5 READLINK: this file system has no symbolic links it can resolve. */
export const readlink = attributesAnd(async (ctx, h) => {
  const target = await ctx.fs.readlink(h);
  return (w) => w.string(target);
});
