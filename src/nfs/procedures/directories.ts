import { NFS3ERR_NOTDIR, NFS3ERR_TOOSMALL, NfsError } from '../nfs-errors.js';
import type { NfsAttr } from '../file-system.js';
import { readHandle, writeFattr, writePostOpAttr } from '../wire.js';
import { XdrWriter } from '../../rpc/xdr.js';
import { attrsOrNone, respond, type NfsContext, type NfsProcedure } from './context.js';

/**
 * READDIR and READDIRPLUS (RFC 1813 §3.3.16-17). Cookies are positions in the
 * file system's stable listing: 1 = ".", 2 = "..", 3 + i = entry i. The cookie
 * verifier is always zero and never checked (strict verifiers break Linux and
 * macOS clients), so a cookie stays valid as long as the listing's order does.
 */
interface Listed {
  readonly name: string;
  readonly fileid: bigint;
  readonly cookie: bigint;
}

const FIXED_REPLY = 4 + 4 + 84 + 8 + 4 + 4; // status, post_op_attr, verifier, list end, eof

async function listing(ctx: NfsContext, dir: Buffer, attr: NfsAttr): Promise<Listed[]> {
  if (attr.type !== 'dir') throw new NfsError(NFS3ERR_NOTDIR);
  const parent = await ctx.fs.getattr(await ctx.fs.lookup(dir, '..'));
  const entries = await ctx.fs.readdir(dir);
  return [
    { name: '.', fileid: attr.fileid, cookie: 1n },
    { name: '..', fileid: parent.fileid, cookie: 2n },
    ...entries.map((e, i) => ({ name: e.name, fileid: e.fileid, cookie: BigInt(i + 3) })),
  ];
}

function nameBytes(name: string): number {
  const n = Buffer.byteLength(name);
  return 4 + n + ((4 - (n % 4)) % 4);
}

/**
 * Pages a listing from `cookie`: entries are encoded while `fits` accepts
 * their size; TOOSMALL if not even one fits.
 */
async function page(
  ctx: NfsContext,
  out: XdrWriter,
  dir: Buffer,
  cookie: bigint,
  encode: (w: XdrWriter, e: Listed) => Promise<number | undefined>,
): Promise<void> {
  await respond(
    ctx,
    out,
    async () => {
      const attr = await ctx.fs.getattr(dir);
      const all = (await listing(ctx, dir, attr)).filter((e) => e.cookie > cookie);
      const w = new XdrWriter();
      let n = 0;
      for (const e of all) {
        if ((await encode(w, e)) === undefined) break;
        n += 1;
      }
      if (n === 0 && all.length > 0) throw new NfsError(NFS3ERR_TOOSMALL);
      const eof = n === all.length;
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

/** §3.3.16 READDIR: names and fileids within `count` bytes. */
export const readdir: NfsProcedure = async (a, out, ctx) => {
  const dir = readHandle(a);
  const cookie = a.u64('cookie');
  a.fixedOpaque(8, 'cookieverf');
  const count = a.u32('count');
  a.end();
  let used = FIXED_REPLY;
  await page(ctx, out, dir, cookie, async (w, e) => {
    const size = 4 + 8 + nameBytes(e.name) + 8;
    if (used + size > count) return undefined;
    w.bool(true).u64(e.fileid).string(e.name).u64(e.cookie);
    used += size;
    return size;
  });
};

/** §3.3.17 READDIRPLUS: also each entry's attributes and handle, within dircount and maxcount. */
export const readdirplus: NfsProcedure = async (a, out, ctx) => {
  const dir = readHandle(a);
  const cookie = a.u64('cookie');
  a.fixedOpaque(8, 'cookieverf');
  const dircount = a.u32('dircount');
  const maxcount = a.u32('maxcount');
  a.end();
  let used = FIXED_REPLY;
  let dirUsed = 0;
  await page(ctx, out, dir, cookie, async (w, e) => {
    const h = await ctx.fs.lookup(dir, e.name);
    const eattr = await ctx.fs.getattr(h);
    const dirSize = 8 + nameBytes(e.name) + 8;
    const size = 4 + dirSize + 4 + 84 + 4 + 4 + h.length + ((4 - (h.length % 4)) % 4);
    if (used + size > maxcount || dirUsed + dirSize > dircount) return undefined;
    w.bool(true).u64(e.fileid).string(e.name).u64(e.cookie);
    w.bool(true);
    writeFattr(w, eattr, ctx.fsid);
    w.bool(true).opaque(h);
    used += size;
    dirUsed += dirSize;
    return size;
  });
};
