import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, lstat, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { XdrWriter } from '../src/rpc/xdr.js';
import { nfsTempDir, sattrMode, testDatastore } from './nfs-harness.js';

const CREATE = 8;
const MKDIR = 9;
const SETATTR = 2;
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
