import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { XdrWriter, type XdrReader } from '../src/rpc/xdr.js';
import { countFsCalls, nfsTempDir, testDatastore, type InProcessNfs } from './nfs-harness.js';

const GETATTR = 1;
const READDIR = 16;
const READDIRPLUS = 17;
const NFS3ERR_STALE = 70;
const MAX_DIR_REPLY = 64 * 1024;

async function makeFiles(dir: string, count: number, prefix = 'file-'): Promise<void> {
  for (let i = 0; i < count; i += 64) {
    await Promise.all(
      Array.from({ length: Math.min(64, count - i) }, async (_, j) => {
        await (await open(join(dir, `${prefix}${String(i + j).padStart(6, '0')}.vmdk`), 'w')).close();
      }),
    );
  }
}

interface Page {
  readonly names: string[];
  readonly cookie: bigint;
  readonly eof: boolean;
  readonly replyBytes: number;
}

function skipPostOpAttr(r: XdrReader): void {
  if (r.bool()) r.fixedOpaque(84);
}

/** One READDIR (plus = false) or READDIRPLUS page from `cookie`. */
async function readPage(nfs: InProcessNfs, dir: Buffer, cookie: bigint, plus: boolean, count: number, maxcount = count): Promise<Page> {
  const args = new XdrWriter().opaque(dir).u64(cookie).fixedOpaque(Buffer.alloc(8)).u32(count);
  if (plus) args.u32(maxcount);
  const { status, r } = await nfs.nfs(plus ? READDIRPLUS : READDIR, args);
  const replyBytes = r.remaining + 4;
  assert.equal(status, 0, `${plus ? 'READDIRPLUS' : 'READDIR'} from cookie ${cookie}`);
  skipPostOpAttr(r);
  r.fixedOpaque(8);
  const names: string[] = [];
  let last = cookie;
  while (r.bool()) {
    r.u64();
    names.push(r.string(255));
    last = r.u64();
    if (plus) {
      skipPostOpAttr(r);
      if (r.bool()) r.opaque(64);
    }
  }
  return { names, cookie: last, eof: r.bool(), replyBytes };
}

/** A whole listing through pages; stops early (and fails) once `budget` says so. */
async function listAll(
  nfs: InProcessNfs,
  dir: Buffer,
  plus: boolean,
  count: number,
  maxcount = count,
  budget: () => boolean = () => true,
): Promise<{ names: string[]; pages: number }> {
  const names: string[] = [];
  let cookie = 0n;
  for (let pages = 1; ; pages++) {
    const p = await readPage(nfs, dir, cookie, plus, count, maxcount);
    names.push(...p.names);
    cookie = p.cookie;
    if (p.eof) return { names, pages };
    assert.ok(budget(), `listing stopped after ${pages} pages: over its cost budget`);
  }
}

test('nfs listing: READDIR count and READDIRPLUS dircount/maxcount are capped, whatever the client asks', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir, (filesDir) => makeFiles(filesDir, 3000));
    const rd = await readPage(ds.nfs, ds.session, 0n, false, 0xffffffff);
    assert.ok(rd.replyBytes <= MAX_DIR_REPLY, `READDIR reply of ${rd.replyBytes} bytes`);
    assert.equal(rd.eof, false, 'the rest comes in later pages');
    const rdp = await readPage(ds.nfs, ds.session, 0n, true, 0xffffffff, 0xffffffff);
    assert.ok(rdp.replyBytes <= MAX_DIR_REPLY, `READDIRPLUS reply of ${rdp.replyBytes} bytes`);
    assert.equal(rdp.eof, false);
    const all = await listAll(ds.nfs, ds.session, true, 0xffffffff, 0xffffffff);
    assert.equal(new Set(all.names).size, 3000 + 3, 'every file, the disk, "." and ".." once');
  } finally {
    await cleanup();
  }
});

test('nfs listing: a folder of 10000 files is listed through pages at O(n) lstat calls', async (t) => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const timeOf = async (n: number, sub: string): Promise<{ ms: number; lstats: number; pages: number }> => {
      const ds = await testDatastore(join(dir, sub), (filesDir) => makeFiles(filesDir, n));
      const calls = countFsCalls();
      try {
        const started = performance.now();
        // Linux asks READDIRPLUS with dircount = maxcount / 8.
        const plus = await listAll(ds.nfs, ds.session, true, 8192, 65536, () => calls.counts['lstat']! < 10 * n);
        const ms = performance.now() - started;
        assert.equal(plus.names.length, n + 3);
        assert.equal(new Set(plus.names).size, n + 3, 'no name twice');
        assert.deepEqual(plus.names.slice(0, 2), ['.', '..']);
        const lstats = calls.counts['lstat']!;
        // A listing (n) and each entry's attributes (n), plus a few per page; once more if the machine is so slow that a listing expires.
        assert.ok(lstats <= 3 * n + 10 * plus.pages, `READDIRPLUS walk of ${n} files: ${lstats} lstat calls in ${plus.pages} pages`);
        assert.ok(calls.counts['readdir']! <= 2, `${calls.counts['readdir']} readdir calls`);
        const plain = await listAll(ds.nfs, ds.session, false, 4096, 4096, () => calls.counts['lstat']! < 10 * n);
        assert.equal(new Set(plain.names).size, n + 3);
        assert.ok(
          calls.counts['lstat']! - lstats <= n + plain.pages * 2,
          `READDIR walk: ${calls.counts['lstat']! - lstats} lstat calls in ${plain.pages} pages`,
        );
        return { ms, lstats, pages: plus.pages };
      } finally {
        calls.restore();
      }
    };
    const small = await timeOf(2000, 'small');
    const big = await timeOf(10000, 'big');
    // Time is reported, not asserted (the machine may be shared); the lstat counts above are the bound.
    t.diagnostic(
      `READDIRPLUS walk: 2000 files ${small.ms.toFixed(0)} ms (${small.lstats} lstat), 10000 files ${big.ms.toFixed(0)} ms (${big.lstats} lstat, ${big.pages} pages)`,
    );
  } finally {
    await cleanup();
  }
});

test('nfs listing: cookies stay valid while the folder changes between pages (no entry skipped or repeated)', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir, (filesDir) => makeFiles(filesDir, 1000));
    const first = await readPage(ds.nfs, ds.session, 0n, false, 8192);
    assert.equal(first.eof, false);
    const seen = new Set(first.names);
    // Remove some files already listed and add new ones, through the file system and behind its back.
    const listed = first.names.filter((n) => n.startsWith('file-'));
    for (const n of listed.slice(0, 40)) await ds.fs.remove(ds.session, n);
    await ds.fs.create(ds.session, 'added-through-nfs', { mode: 'guarded', attrs: {} });
    await makeFiles(ds.filesDir, 10, 'added-behind-');
    let cookie = first.cookie;
    for (;;) {
      const p = await readPage(ds.nfs, ds.session, cookie, false, 8192);
      for (const n of p.names) {
        assert.ok(!seen.has(n), `${n} listed twice`);
        seen.add(n);
      }
      cookie = p.cookie;
      if (p.eof) break;
    }
    for (let i = 0; i < 1000; i++) {
      const n = `file-${String(i).padStart(6, '0')}.vmdk`;
      assert.ok(seen.has(n), `${n}, present all along, listed`);
    }
  } finally {
    await cleanup();
  }
});

test('nfs handles: made-up inode numbers are answered STALE at once, never with a rescan of the tree per request', async (t) => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir, async (filesDir) => {
      await makeFiles(filesDir, 3000);
      for (let d = 0; d < 20; d++) {
        await mkdir(join(filesDir, `dir-${d}`));
        await makeFiles(join(filesDir, `dir-${d}`), 100);
      }
    });
    const key = ds.session.subarray(2, 18);
    const bogus = (ino: bigint): Buffer => {
      const h = Buffer.alloc(26);
      h[0] = 1;
      h[1] = 4;
      key.copy(h, 2);
      h.writeBigUInt64BE(ino, 18);
      return h;
    };
    // The first unknown handle may cost one rescan (the tree could have changed behind the server's back).
    assert.equal((await ds.nfs.nfs(GETATTR, new XdrWriter().opaque(bogus(1n << 40n)))).status, NFS3ERR_STALE);
    const calls = countFsCalls();
    try {
      const started = performance.now();
      let done = 0;
      for (; done < 1000 && performance.now() - started < 10_000; done++) {
        const { status } = await ds.nfs.nfs(GETATTR, new XdrWriter().opaque(bogus((1n << 40n) + BigInt(done) * 7919n)));
        assert.equal(status, NFS3ERR_STALE);
      }
      const ms = performance.now() - started;
      t.diagnostic(`1000 bogus handles: ${ms.toFixed(0)} ms, ${calls.counts['lstat']} lstat, ${calls.counts['readdir']} readdir calls`);
      assert.equal(done, 1000);
      assert.ok(ms < 1000, `1000 bogus handles took ${ms.toFixed(0)} ms`);
      assert.ok(calls.counts['lstat']! <= 1000, 'no rescan of the tree');
    } finally {
      calls.restore();
    }
  } finally {
    await cleanup();
  }
});

test('nfs handles: a folder renamed through NFS keeps its files handles without a rescan; a rename behind the server is found once rescans are allowed', async () => {
  const { dir, cleanup } = await nfsTempDir();
  let now = 0;
  try {
    const ds = await testDatastore(
      dir,
      async (filesDir) => {
        await makeFiles(filesDir, 500);
        await mkdir(join(filesDir, 'vm'));
        await makeFiles(join(filesDir, 'vm'), 10, 'disk-');
      },
      { monotonicMs: () => now },
    );
    const vm = await ds.fs.lookup(ds.session, 'vm');
    const inside = await ds.fs.lookup(vm, 'disk-000003.vmdk');
    const calls = countFsCalls();
    try {
      await ds.fs.rename(ds.session, 'vm', ds.session, 'vm-renamed');
      assert.equal((await ds.fs.getattr(inside)).type, 'file', 'a file in the renamed folder keeps its handle');
      assert.ok(calls.counts['lstat']! < 50, `${calls.counts['lstat']} lstat calls for a rename and a GETATTR`);
    } finally {
      calls.restore();
    }
    // Moved by someone else: unknown to the server until it may rescan.
    await rename(join(ds.filesDir, 'vm-renamed'), join(ds.filesDir, 'vm-moved'));
    now += 60_000;
    assert.equal((await ds.fs.getattr(inside)).type, 'file', 'found again by a rescan');
  } finally {
    await cleanup();
  }
});
