import { NFS3ERR_NOTDIR, NFS3ERR_TOOSMALL, NfsError } from '../nfs-errors.js';
import type { DirEntry, NfsAttr } from '../file-system.js';
import { MAX_HANDLE, readHandle, writeFattr, writePostOpAttr } from '../wire.js';
import { XdrWriter } from '../../rpc/xdr.js';
import { attrsOrNone, respond, type NfsContext, type NfsProcedure } from './context.js';
import { cookieIndex, firstAfter, type CookieIndex } from './cookies.js';
import { mapLimited } from '../../core/map-limited.js';

/**
 * READDIR and READDIRPLUS (RFC 1813 §3.3.16-17). Cookies: 1 = ".", 2 = "..",
 * and each entry's cookie comes from its name (cookies.ts), so a cookie stays
 * valid while the folder changes between pages: a client resumes after it and
 * neither skips nor repeats an entry that was there all along. The cookie
 * verifier is always zero and never checked (strict verifiers break Linux and
 * macOS clients).
 *
 * A page costs O(entries in the page): the file system hands back the same
 * listing array while the folder is unchanged, and its cookie index is built
 * once per listing.
 */

/** Largest READDIR/READDIRPLUS reply, whatever count a client asks for: FSINFO's dtpref. */
export const MAX_DIR_REPLY = 64 * 1024;

const FIXED_REPLY = 4 + 4 + 84 + 8 + 4 + 4; // status, post_op_attr, verifier, list end, eof
const FATTR = 84;

interface Listed {
  readonly name: string;
  readonly fileid: bigint;
  readonly cookie: bigint;
  /** The entry of the file system's listing (undefined for "." and ".."). */
  readonly entry?: DirEntry;
}

function nameBytes(name: string): number {
  const n = Buffer.byteLength(name);
  return 4 + n + ((4 - (n % 4)) % 4);
}

/** The entries of a page from `cookie` on, yielded in order; "." and ".." first. */
async function* from(ctx: NfsContext, dir: Buffer, attr: NfsAttr, index: CookieIndex, cookie: bigint): AsyncGenerator<Listed> {
  if (cookie < 1n) yield { name: '.', fileid: attr.fileid, cookie: 1n };
  if (cookie < 2n) yield { name: '..', fileid: (await ctx.fs.getattr(await ctx.fs.lookup(dir, '..'))).fileid, cookie: 2n };
  for (let i = firstAfter(index, cookie); i < index.entries.length; i++) {
    const entry = index.entries[i]!;
    yield { name: entry.name, fileid: entry.fileid, cookie: index.cookies[i]!, entry };
  }
}

/**
 * Pages a listing from `cookie`: `take` says whether an entry still fits (and
 * counts it), `encode` writes the chosen entries. TOOSMALL if not even one fits.
 */
async function page(
  ctx: NfsContext,
  out: XdrWriter,
  dir: Buffer,
  cookie: bigint,
  take: (e: Listed) => boolean,
  encode: (w: XdrWriter, chosen: readonly Listed[]) => Promise<void>,
): Promise<void> {
  await respond(
    ctx,
    out,
    async () => {
      const attr = await ctx.fs.getattr(dir);
      if (attr.type !== 'dir') throw new NfsError(NFS3ERR_NOTDIR);
      const index = cookieIndex(await ctx.fs.readdir(dir));
      const chosen: Listed[] = [];
      let eof = true;
      for await (const e of from(ctx, dir, attr, index, cookie)) {
        if (!take(e)) {
          eof = false;
          break;
        }
        chosen.push(e);
      }
      if (chosen.length === 0 && !eof) throw new NfsError(NFS3ERR_TOOSMALL);
      const w = new XdrWriter();
      await encode(w, chosen);
      return (o) => {
        writePostOpAttr(o, attr, ctx.fsid);
        o.u64(0n); // cookieverf: always zero, never checked
        for (const c of w.toChunks()) o.fixedOpaque(c);
        o.bool(false).bool(eof);
      };
    },
    async (w) => writePostOpAttr(w, await attrsOrNone(ctx, dir), ctx.fsid),
  );
}

/** §3.3.16 READDIR: names and fileids within `count` bytes (at most MAX_DIR_REPLY). */
export const readdir: NfsProcedure = async (a, out, ctx) => {
  const dir = readHandle(a);
  const cookie = a.u64('cookie');
  a.fixedOpaque(8, 'cookieverf');
  const count = Math.min(a.u32('count'), MAX_DIR_REPLY);
  a.end();
  let used = FIXED_REPLY;
  await page(
    ctx,
    out,
    dir,
    cookie,
    (e) => {
      const size = 4 + 8 + nameBytes(e.name) + 8;
      if (used + size > count) return false;
      used += size;
      return true;
    },
    async (w, chosen) => {
      for (const e of chosen) w.bool(true).u64(e.fileid).string(e.name).u64(e.cookie);
    },
  );
};

/** An entry's handle and attributes for READDIRPLUS; none if it vanished since the listing was made. */
async function handleAndAttrs(ctx: NfsContext, dir: Buffer, e: Listed): Promise<{ h: Buffer; attr: NfsAttr } | undefined> {
  try {
    const h = e.entry?.handle ?? (await ctx.fs.lookup(dir, e.name));
    return { h, attr: await ctx.fs.getattr(h) };
  } catch {
    return undefined;
  }
}

/**
 * §3.3.17 READDIRPLUS: also each entry's attributes and handle, within
 * dircount and maxcount (each at most MAX_DIR_REPLY). An entry removed since
 * the listing was made goes out without them (both are optional).
 */
export const readdirplus: NfsProcedure = async (a, out, ctx) => {
  const dir = readHandle(a);
  const cookie = a.u64('cookie');
  a.fixedOpaque(8, 'cookieverf');
  const dircount = Math.min(a.u32('dircount'), MAX_DIR_REPLY);
  const maxcount = Math.min(a.u32('maxcount'), MAX_DIR_REPLY);
  a.end();
  let used = FIXED_REPLY;
  let dirUsed = 0;
  await page(
    ctx,
    out,
    dir,
    cookie,
    (e) => {
      const dirSize = 8 + nameBytes(e.name) + 8;
      // The handle's size is known only for entries that carry one; count the largest otherwise.
      const hlen = e.entry?.handle?.length ?? MAX_HANDLE;
      const size = 4 + dirSize + 4 + FATTR + 4 + 4 + hlen + ((4 - (hlen % 4)) % 4);
      if (used + size > maxcount || dirUsed + dirSize > dircount) return false;
      used += size;
      dirUsed += dirSize;
      return true;
    },
    async (w, chosen) => {
      const found = await mapLimited(chosen, 16, (e) => handleAndAttrs(ctx, dir, e));
      chosen.forEach((e, i) => {
        w.bool(true).u64(e.fileid).string(e.name).u64(e.cookie);
        const f = found[i];
        if (f === undefined) {
          w.bool(false).bool(false);
          return;
        }
        w.bool(true);
        writeFattr(w, f.attr, ctx.fsid);
        w.bool(true).opaque(f.h);
      });
    },
  );
};
