import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { MemoryFileSystem } from '../src/testing/memory-fs.js';
import { prng } from '../src/testing/prng.js';
import { MOUNT_PROGRAM, NFS_PROGRAM } from '../src/nfs/index.js';
import { XdrWriter, type XdrReader } from '../src/rpc/xdr.js';
import { InProcessNfs, nfsTempDir, sattrMode, testDatastore, type TestDatastore } from './nfs-harness.js';

const P = {
  GETATTR: 1,
  SETATTR: 2,
  LOOKUP: 3,
  ACCESS: 4,
  READ: 6,
  WRITE: 7,
  CREATE: 8,
  MKDIR: 9,
  REMOVE: 12,
  RMDIR: 13,
  RENAME: 14,
  READDIR: 16,
  READDIRPLUS: 17,
  COMMIT: 21,
} as const;
const NFS3ERR_NOENT = 2;
const NFS3ERR_INVAL = 22;
const NFS3ERR_FBIG = 27;
const NFS3ERR_NAMETOOLONG = 63;
const NFS3ERR_BADHANDLE = 10001;
const MAX_IO = 1024 * 1024;

/** Every nfsstat3 of RFC 1813 §2.6. */
const NFSSTAT3 = new Set([
  0, 1, 2, 5, 6, 13, 17, 18, 19, 20, 21, 22, 27, 28, 30, 31, 63, 66, 69, 70, 71, 10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008,
]);

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}

/** A file handle's XDR followed by raw bytes. */
function withHandle(h: Buffer, ...rest: Buffer[]): Buffer {
  return Buffer.concat([new XdrWriter().opaque(h).toBuffer(), ...rest]);
}

test('nfs decoders: claimed lengths beyond the record are GARBAGE_ARGS before anything is allocated', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir);
    const huge = [0xffffffff, 0xfffffff0, 0x80000000, 0x7fffffff, MAX_IO + 1];
    const before = process.memoryUsage();
    for (const len of huge) {
      const tail = Buffer.alloc(16, 0x61);
      // A handle that claims `len` bytes, for every procedure that starts with one.
      for (const proc of Object.values(P)) assert.equal(await ds.nfs.call(NFS_PROGRAM, proc, Buffer.concat([u32(len), tail])), 'GARBAGE_ARGS', `proc ${proc}`);
      // A filename that claims `len` bytes.
      for (const proc of [P.LOOKUP, P.CREATE, P.MKDIR, P.REMOVE, P.RMDIR, P.RENAME])
        assert.equal(await ds.nfs.call(NFS_PROGRAM, proc, withHandle(ds.session, u32(len), tail)), 'GARBAGE_ARGS', `name of proc ${proc}`);
      // WRITE data that claims `len` bytes.
      const write = withHandle(ds.diskHandle, Buffer.alloc(8), u32(len), u32(0), u32(len), tail);
      assert.equal(await ds.nfs.call(NFS_PROGRAM, P.WRITE, write), 'GARBAGE_ARGS', 'WRITE data');
      // MOUNT and UMNT paths.
      for (const proc of [1, 3]) assert.equal(await ds.nfs.call(MOUNT_PROGRAM, proc, Buffer.concat([u32(len), tail])), 'GARBAGE_ARGS', `MOUNT proc ${proc}`);
    }
    const grew = process.memoryUsage().arrayBuffers - before.arrayBuffers;
    assert.ok(grew < 16 * 1024 * 1024, `array buffers grew by ${grew} bytes`);
    // Truncated arguments and trailing bytes.
    const read = new XdrWriter().opaque(ds.diskHandle).u64(0n).u32(10).toBuffer();
    for (let cut = 0; cut < read.length; cut++)
      assert.equal(await ds.nfs.call(NFS_PROGRAM, P.READ, read.subarray(0, cut)), 'GARBAGE_ARGS', `READ cut at ${cut}`);
    assert.equal(await ds.nfs.call(NFS_PROGRAM, P.READ, Buffer.concat([read, u32(0)])), 'GARBAGE_ARGS', 'trailing bytes');
  } finally {
    await cleanup();
  }
});

/** Answers of CREATE, MKDIR, LOOKUP, REMOVE and RENAME for one raw name. */
async function nameStatuses(ds: TestDatastore, raw: Buffer): Promise<number[]> {
  const name = new XdrWriter().opaque(raw).toBuffer();
  const out: number[] = [];
  const statusOf = async (proc: number, args: Buffer): Promise<number> => {
    const r = await ds.nfs.call(NFS_PROGRAM, proc, args);
    assert.notEqual(r, 'GARBAGE_ARGS', `proc ${proc}: a name of ${raw.length} bytes decodes`);
    return (r as XdrReader).u32();
  };
  out.push(await statusOf(P.CREATE, Buffer.concat([withHandle(ds.session, name), sattrMode(new XdrWriter().u32(0), undefined).toBuffer()])));
  out.push(await statusOf(P.MKDIR, Buffer.concat([withHandle(ds.session, name), sattrMode(new XdrWriter(), undefined).toBuffer()])));
  out.push(await statusOf(P.LOOKUP, withHandle(ds.session, name)));
  out.push(await statusOf(P.REMOVE, withHandle(ds.session, name)));
  out.push(await statusOf(P.RENAME, Buffer.concat([withHandle(ds.session, name), new XdrWriter().opaque(ds.session).string('target').toBuffer()])));
  return out;
}

test('nfs decoders: names with "/", NUL, "..", invalid UTF-8 or over 255 bytes are refused with INVAL or NAMETOOLONG and touch nothing', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir);
    const outsideBefore = (await readdir(dir)).sort();
    const cases: [string, Buffer, number][] = [
      ['a slash', Buffer.from('../escape'), NFS3ERR_INVAL],
      ['a slash at the end', Buffer.from('x/'), NFS3ERR_INVAL],
      ['NUL', Buffer.from('a\0b'), NFS3ERR_INVAL],
      ['empty', Buffer.alloc(0), NFS3ERR_INVAL],
      ['invalid UTF-8', Buffer.from([0x61, 0xff, 0x62]), NFS3ERR_INVAL],
      ['an unpaired surrogate', Buffer.from([0xed, 0xa0, 0x80]), NFS3ERR_INVAL],
      ['256 bytes', Buffer.alloc(256, 0x61), NFS3ERR_NAMETOOLONG],
      ['1024 bytes', Buffer.alloc(1024, 0x61), NFS3ERR_NAMETOOLONG],
    ];
    for (const [what, raw, expected] of cases) {
      const statuses = await nameStatuses(ds, raw);
      assert.deepEqual(statuses, [expected, expected, expected, expected, expected], `${what}: CREATE, MKDIR, LOOKUP, REMOVE, RENAME`);
    }
    // "." and "..": found by LOOKUP, never created, removed or renamed.
    for (const name of ['.', '..']) {
      const [create, mkdir, lookup, remove, rename] = await nameStatuses(ds, Buffer.from(name));
      assert.deepEqual([create, mkdir, remove, rename], [NFS3ERR_INVAL, NFS3ERR_INVAL, NFS3ERR_INVAL, NFS3ERR_INVAL], name);
      assert.equal(lookup, 0, `LOOKUP ${name}`);
    }
    // 255 bytes is a valid name: created, then MKDIR finds it, LOOKUP and REMOVE succeed, RENAME finds it gone.
    assert.deepEqual(await nameStatuses(ds, Buffer.alloc(255, 0x62)), [0, 17, 0, 0, NFS3ERR_NOENT], 'a 255-byte name');
    assert.deepEqual((await readdir(dir)).sort(), outsideBefore, 'nothing appeared next to the session folder');
    assert.deepEqual(await readdir(ds.filesDir), [], 'nothing was created in it either');
  } finally {
    await cleanup();
  }
});

test('nfs decoders: offsets and sizes past the largest file are FBIG, READ counts past rtmax are clamped, bad times are INVAL', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir);
    const file = await ds.fs.create(ds.session, 'f', { mode: 'guarded', attrs: {} });
    const mem = new MemoryFileSystem('/export');
    const memFile = await mem.create(mem.mount('/export')!, 'f', { mode: 'guarded', attrs: {} });
    const memNfs = new InProcessNfs(mem);
    const write = (h: Buffer, offset: bigint, data = Buffer.from('abc')): XdrWriter =>
      new XdrWriter().opaque(h).u64(offset).u32(data.length).u32(2).opaque(data);
    for (const [nfs, h] of [
      [ds.nfs, file],
      [memNfs, memFile],
    ] as const) {
      assert.equal((await nfs.nfs(P.WRITE, write(h, 2n ** 53n - 2n))).status, NFS3ERR_FBIG, 'WRITE whose end passes 2^53');
      assert.equal((await nfs.nfs(P.WRITE, write(h, 2n ** 50n))).status, NFS3ERR_FBIG, 'WRITE past maxfilesize (2^50)');
      assert.equal((await nfs.nfs(P.WRITE, write(h, 2n ** 64n - 1n))).status, NFS3ERR_INVAL, 'offset past 2^53: INVAL');
      const setSize = (size: bigint): XdrWriter => new XdrWriter().opaque(h).bool(false).bool(false).bool(false).bool(true).u64(size).u32(0).u32(0).bool(false);
      assert.equal((await nfs.nfs(P.SETATTR, setSize(2n ** 50n + 1n))).status, NFS3ERR_FBIG, 'SETATTR size past maxfilesize');
      const badTime = new XdrWriter().opaque(h).bool(false).bool(false).bool(false).bool(false).u32(2).u32(1).u32(1_000_000_000).u32(0).bool(false);
      assert.equal((await nfs.nfs(P.SETATTR, badTime)).status, NFS3ERR_INVAL, 'nseconds ≥ 10^9');
    }
    assert.equal((await ds.nfs.nfs(P.WRITE, write(ds.diskHandle, BigInt(ds.disk.size - 1)))).status, NFS3ERR_FBIG, 'WRITE past the end of a recovered disk');
    const read = await ds.nfs.nfs(P.READ, new XdrWriter().opaque(ds.diskHandle).u64(0n).u32(0xffffffff));
    assert.equal(read.status, 0);
    if (read.r.bool()) read.r.fixedOpaque(84);
    assert.ok(read.r.u32() <= MAX_IO, 'READ count clamped to rtmax');
    const far = await ds.nfs.nfs(
      P.READ,
      new XdrWriter()
        .opaque(ds.diskHandle)
        .u64(2n ** 53n - 1n)
        .u32(0xffffffff),
    );
    assert.equal(far.status, 0, 'READ far past the end');
    if (far.r.bool()) far.r.fixedOpaque(84);
    assert.equal(far.r.u32(), 0);
    assert.equal(far.r.bool(), true, 'eof');
    assert.equal((await ds.nfs.nfs(P.GETATTR, new XdrWriter().opaque(Buffer.alloc(26)))).status, NFS3ERR_BADHANDLE);
    assert.equal((await ds.nfs.nfs(P.LOOKUP, new XdrWriter().opaque(ds.session).string('missing'))).status, NFS3ERR_NOENT);
  } finally {
    await cleanup();
  }
});

test('nfs decoders: 20000 mutated calls to every NFS and MOUNT procedure of a datastore answer GARBAGE_ARGS or an nfsstat3, never throw', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir);
    const outsideBefore = (await readdir(dir)).sort();
    const file = await ds.fs.create(ds.session, 'f', { mode: 'guarded', attrs: {} });
    const handles = [ds.root, ds.session, ds.diskHandle, file];
    const rand = prng(12);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    // Valid-looking arguments per procedure, then mutated: bytes flipped, cut, extended, lengths made huge.
    const valid = (proc: number): Buffer => {
      const h = pick(handles);
      const w = new XdrWriter().opaque(h);
      const name = pick(['f', 'g', '.', '..', 'vm1-flat.vmdk', 'dir', 'x'.repeat(300)]);
      switch (proc) {
        case P.SETATTR:
          return sattrMode(w, pick([undefined, 0o644, 0o7777]))
            .bool(false)
            .toBuffer();
        case P.LOOKUP:
        case P.REMOVE:
        case P.RMDIR:
          return w.string(name).toBuffer();
        case P.ACCESS:
          return w.u32(0x3f).toBuffer();
        case P.READ:
          return w
            .u64(BigInt(Math.floor(rand() * 2 ** 21)))
            .u32(Math.floor(rand() * 2 ** 21))
            .toBuffer();
        case P.WRITE: {
          const data = Buffer.alloc(Math.floor(rand() * 64), 0x77);
          return w
            .u64(BigInt(Math.floor(rand() * 2 ** 21)))
            .u32(data.length)
            .u32(Math.floor(rand() * 3))
            .opaque(data)
            .toBuffer();
        }
        case P.CREATE:
          return sattrMode(w.string(name).u32(Math.floor(rand() * 2)), 0o644).toBuffer();
        case P.MKDIR:
          return sattrMode(w.string(name), 0o755).toBuffer();
        case P.RENAME:
          return w
            .string(name)
            .opaque(pick(handles))
            .string(pick(['f', 'g', 'dir']))
            .toBuffer();
        case P.READDIR:
          return w
            .u64(BigInt(Math.floor(rand() * 8)))
            .fixedOpaque(Buffer.alloc(8))
            .u32(Math.floor(rand() * 9000))
            .toBuffer();
        case P.READDIRPLUS:
          return w
            .u64(BigInt(Math.floor(rand() * 8)))
            .fixedOpaque(Buffer.alloc(8))
            .u32(Math.floor(rand() * 9000))
            .u32(Math.floor(rand() * 9000))
            .toBuffer();
        case P.COMMIT:
          return w.u64(0n).u32(0).toBuffer();
        default:
          return w.toBuffer();
      }
    };
    const mutate = (b: Buffer): Buffer => {
      const m = Buffer.from(b);
      switch (Math.floor(rand() * 4)) {
        case 0:
          for (let i = 0; i < 1 + rand() * 3 && m.length > 0; i++) m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256);
          return m;
        case 1:
          return m.subarray(0, Math.floor(rand() * m.length));
        case 2:
          return Buffer.concat([m, Buffer.alloc(1 + Math.floor(rand() * 8), Math.floor(rand() * 256))]);
        default: {
          // A length field made huge: any aligned word.
          if (m.length >= 4) m.writeUInt32BE(pick([0xffffffff, 0x80000000, 0x10000, 256, 64, 57]), 4 * Math.floor(rand() * Math.floor(m.length / 4)));
          return m;
        }
      }
    };
    const procs = [0, ...Array.from({ length: 21 }, (_, i) => i + 1)];
    const before = process.memoryUsage().heapUsed;
    let garbage = 0;
    for (let i = 0; i < 20000; i++) {
      const mount = rand() < 0.1;
      const proc = mount ? pick([0, 1, 2, 3, 4, 5]) : pick(procs);
      const args = mount
        ? mutate(new XdrWriter().string(pick(['/lifeboat', '/lifeboat/vm1', '/lifeboat/../etc', '/x'])).toBuffer())
        : rand() < 0.8
          ? mutate(valid(proc))
          : valid(proc);
      const r = await ds.nfs.call(mount ? MOUNT_PROGRAM : NFS_PROGRAM, proc, args);
      if (r === 'GARBAGE_ARGS') {
        garbage += 1;
        continue;
      }
      if (!mount && proc !== 0) assert.ok(NFSSTAT3.has(r.u32()), `proc ${proc}: an nfsstat3`);
    }
    const grew = process.memoryUsage().heapUsed - before;
    assert.ok(garbage > 1000, `${garbage} calls were GARBAGE_ARGS`);
    assert.ok(grew < 64 * 1024 * 1024, `heap grew by ${grew} bytes`);
    assert.deepEqual((await readdir(dir)).sort(), outsideBefore, 'nothing appeared outside the session folder');
  } finally {
    await cleanup();
  }
});
