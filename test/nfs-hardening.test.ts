import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, lstat, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError } from '../src/core/errors.js';
import { NfsError, nfsStatusOf } from '../src/nfs/index.js';
import { XdrWriter } from '../src/rpc/xdr.js';
import { nfsTempDir, sattrMode, testDatastore } from './nfs-harness.js';

const CREATE = 8;
const MKDIR = 9;
const SETATTR = 2;
const READ = 6;
const GETATTR = 1;
const SET_ID_AND_STICKY = 0o7000;

async function diskMode(path: string): Promise<number> {
  return (await lstat(path)).mode & 0o7777;
}

test('nfs modes: CREATE, MKDIR and SETATTR never leave setuid, setgid or sticky bits on the real files', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir, async (filesDir) => {
      // A file left set-id by an older server: the datastore clears it when it takes the session.
      await writeFile(join(filesDir, 'old.sh'), '#!/bin/sh\n');
      await chmod(join(filesDir, 'old.sh'), 0o4755);
    });
    assert.equal(await diskMode(join(ds.filesDir, 'old.sh')), 0o755, 'set-id bits of existing session files cleared');

    const created = await ds.nfs.nfs(CREATE, sattrMode(new XdrWriter().opaque(ds.session).string('run.sh').u32(0), 0o6755));
    assert.equal(created.status, 0);
    assert.equal(await diskMode(join(ds.filesDir, 'run.sh')), 0o755, 'CREATE with mode 06755');

    const made = await ds.nfs.nfs(MKDIR, sattrMode(new XdrWriter().opaque(ds.session).string('shared'), 0o3777));
    assert.equal(made.status, 0);
    assert.equal(await diskMode(join(ds.filesDir, 'shared')), 0o777, 'MKDIR with mode 03777');

    const file = await ds.fs.lookup(ds.session, 'run.sh');
    const set = await ds.nfs.nfs(SETATTR, sattrMode(new XdrWriter().opaque(file), 0o4777).bool(false));
    assert.equal(set.status, 0);
    assert.equal(await diskMode(join(ds.filesDir, 'run.sh')), 0o777, 'SETATTR with mode 04777');
    const sub = await ds.fs.lookup(ds.session, 'shared');
    assert.equal((await ds.nfs.nfs(SETATTR, sattrMode(new XdrWriter().opaque(sub), 0o1755).bool(false))).status, 0);
    assert.equal(await diskMode(join(ds.filesDir, 'shared')), 0o755, 'SETATTR of a folder with the sticky bit');

    // What GETATTR reports agrees with the disk.
    const got = await ds.nfs.nfs(GETATTR, new XdrWriter().opaque(file));
    assert.equal(got.status, 0);
    got.r.u32(); // type
    assert.equal(got.r.u32() & SET_ID_AND_STICKY, 0);

    // The file system's own API strips them too (whoever calls it).
    await ds.fs.setattr(file, { mode: 0o2755 });
    assert.equal(await diskMode(join(ds.filesDir, 'run.sh')), 0o755);
    const direct = await ds.fs.create(ds.session, 'direct', { mode: 'guarded', attrs: { mode: 0o4700 } });
    assert.equal(await diskMode(join(ds.filesDir, 'direct')), 0o700);
    assert.equal((await ds.fs.getattr(direct)).mode, 0o700);
    await ds.fs.mkdir(ds.session, 'direct-dir', { mode: 0o1700 });
    assert.equal(await diskMode(join(ds.filesDir, 'direct-dir')), 0o700);
  } finally {
    await cleanup();
  }
});

test('nfs modes: a symbolic link in a session folder is never followed by SETATTR, READ or WRITE', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const outside = join(dir, 'outside.txt');
    await writeFile(outside, 'host file');
    await chmod(outside, 0o600);
    const ds = await testDatastore(dir, async (filesDir) => {
      await symlink(outside, join(filesDir, 'escape'));
    });
    const link = await ds.fs.lookup(ds.session, 'escape');
    const set = await ds.nfs.nfs(SETATTR, sattrMode(new XdrWriter().opaque(link), 0o777).bool(false));
    assert.notEqual(set.status, 0, 'SETATTR of a symbolic link fails');
    await assert.rejects(ds.fs.setattr(link, { mode: 0o666 }));
    await assert.rejects(ds.fs.setattr(link, { size: 0 }));
    await assert.rejects(ds.fs.write(link, 0, Buffer.from('x'), true));
    await assert.rejects(ds.fs.read(link, 0, 100));
    assert.equal(await diskMode(outside), 0o600, 'the host file keeps its mode');
    assert.equal(await readFile(outside, 'utf8'), 'host file', 'and its bytes');
  } finally {
    await cleanup();
  }
});

const WRITE = 7;
const COMMIT = 21;
const NFS3ERR_IO = 5;
const NFS3ERR_NOSPC = 28;

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: from the device`), { code });
}

test('nfs errors: a session disk that runs out of space answers WRITE and COMMIT with NFS3ERR_NOSPC, not NFS3ERR_IO', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir);
    const cases: [string, unknown, number][] = [
      ['LFB_ERR_NO_SPACE', new LifeboatError('LFB_ERR_NO_SPACE', 'overlay: no space left'), NFS3ERR_NOSPC],
      ['raw ENOSPC', errno('ENOSPC'), NFS3ERR_NOSPC],
      ['raw EDQUOT', errno('EDQUOT'), NFS3ERR_NOSPC],
      ['LFB_ERR_IO wrapping ENOSPC', new LifeboatError('LFB_ERR_IO', 'overlay write', { cause: errno('ENOSPC') }), NFS3ERR_NOSPC],
      ['EROFS', errno('EROFS'), 30],
      ['LFB_ERR_IO with errno EROFS', new LifeboatError('LFB_ERR_IO', 'overlay write', { details: { errno: 'EROFS' } }), 30],
      ['LFB_ERR_BLOCK_CORRUPT', new LifeboatError('LFB_ERR_BLOCK_CORRUPT', 'block 3'), NFS3ERR_IO],
      ['unknown', new Error('something else'), NFS3ERR_IO],
    ];
    for (const [what, err, expected] of cases) {
      ds.disk.failWith = err;
      const w = await ds.nfs.nfs(WRITE, new XdrWriter().opaque(ds.diskHandle).u64(4096n).u32(3).u32(2).opaque(Buffer.from('abc')));
      assert.equal(w.status, expected, `WRITE, device fails with ${what}`);
      const c = await ds.nfs.nfs(COMMIT, new XdrWriter().opaque(ds.diskHandle).u64(0n).u32(0));
      assert.equal(c.status, expected, `COMMIT, device fails with ${what}`);
    }
    ds.disk.failWith = undefined;
    assert.equal((await ds.nfs.nfs(WRITE, new XdrWriter().opaque(ds.diskHandle).u64(4096n).u32(3).u32(2).opaque(Buffer.from('abc')))).status, 0);
    assert.equal(ds.disk.bytes.subarray(4096, 4099).toString(), 'abc');
  } finally {
    await cleanup();
  }
});

test('nfs errors: one mapping from errors to nfsstat3', () => {
  const table: [unknown, number][] = [
    [errno('ENOENT'), 2],
    [errno('EEXIST'), 17],
    [errno('ENOTDIR'), 20],
    [errno('EISDIR'), 21],
    [errno('ENOTEMPTY'), 66],
    [errno('EACCES'), 13],
    [errno('EPERM'), 1],
    [errno('EFBIG'), 27],
    [errno('ENAMETOOLONG'), 63],
    [errno('ENOSPC'), 28],
    [errno('EDQUOT'), 28],
    [errno('EROFS'), 30],
    [errno('EXDEV'), 18],
    [errno('ESTALE'), 70],
    [errno('EINVAL'), 22],
    [errno('EIO'), 5],
    [new LifeboatError('LFB_ERR_NO_SPACE', 'full'), 28],
    [new LifeboatError('LFB_ERR_BLOCK_CORRUPT', 'bad block'), 5],
    [new LifeboatError('LFB_ERR_FILE_CORRUPT', 'bad file', { cause: errno('ENOSPC') }), 5],
    [new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'outside the disk'), 22],
    [new LifeboatError('LFB_ERR_IO', 'read', { cause: new LifeboatError('LFB_ERR_NO_SPACE', 'full') }), 28],
    [new NfsError(70), 70],
    [new TypeError('not an errno'), 5],
    ['a string', 5],
    [undefined, 5],
  ];
  for (const [err, status] of table) assert.equal(nfsStatusOf(err), status, `${String((err as { code?: string })?.code ?? err)}`);
});

test('nfs READ of a session disk borrows the device’s bytes and gives them back once the reply is out, not before', async () => {
  const { dir, cleanup } = await nfsTempDir();
  try {
    const ds = await testDatastore(dir);
    ds.disk.bytes.fill(0x5a, 4096, 8192);
    let lent = 0;
    let borrowed = 0;
    Object.assign(ds.disk, {
      async readPinned(offset: number, length: number) {
        const data = Buffer.from(ds.disk.bytes.subarray(offset, offset + length));
        lent += 1;
        borrowed += 1;
        // In two parts, as a read across blocks is lent: a small one of an odd length (copied into the reply) and a large
        // one (referenced).
        return {
          parts: [data.subarray(0, 101), data.subarray(101)],
          length,
          release() {
            lent -= 1;
            // Given back, the memory may hold other bytes at once: a reply not yet out would carry these.
            data.fill(0xee);
          },
        };
      },
    });
    // An odd count: the opaque is padded once, after both parts.
    const read = await ds.nfs.nfs(READ, new XdrWriter().opaque(ds.diskHandle).u64(4096n).u32(4093));
    assert.equal(read.status, 0);
    if (read.r.bool()) read.r.fixedOpaque(84); // post_op_attr: a fattr3
    assert.equal(read.r.u32(), 4093);
    read.r.bool(); // eof
    assert.ok(read.r.opaque(4093).equals(Buffer.alloc(4093, 0x5a)), 'the bytes lent, not what they became after');
    read.r.end();
    assert.equal(borrowed, 1, 'the disk lent them');
    assert.equal(lent, 0, 'and got them back');
  } finally {
    await cleanup();
  }
});
