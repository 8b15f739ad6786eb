import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, readFile, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, tempDir } from './helpers.js';
import { isLifeboatError } from '../src/core/errors.js';
import { createLogger } from '../src/core/log.js';
import { ephemeralSource, find, get, list, openBrowse, parseGuestPath, tar, type OpenedBrowse } from '../src/files/index.js';

// KVM aborts on some CI hosts: the appliance runs under TCG unless the environment says otherwise.
process.env['LIBGUESTFS_BACKEND'] ??= 'direct';
process.env['LIBGUESTFS_BACKEND_SETTINGS'] ??= 'force_tcg';
// The cached appliance stays where libguestfs keeps it by default, whatever TMPDIR the test sets below.
process.env['LIBGUESTFS_CACHEDIR'] ??= '/var/tmp';

const MiB = 1024 * 1024;
const MTIME = 1_500_000_000;
let tmp: { dir: string; cleanup: () => Promise<void> };
let repo = '';
let older = '';
let newer = '';

function sh(cmd: string, args: string[], input?: string, timeoutMs = 300_000): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, ...(input !== undefined ? { input } : {}), maxBuffer: 64 * MiB });
}

/** Processes this test started (through the CLI or in-process): they carry its TMPDIR. */
function ourProcesses(): string[] {
  const out: string[] = [];
  for (const pid of spawnSync('ls', ['/proc'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((x) => /^\d+$/.test(x))) {
    if (Number(pid) === process.pid) continue;
    const env = spawnSync('cat', [`/proc/${pid}/environ`], { encoding: 'utf8' }).stdout;
    if (env.split('\0').includes(`TMPDIR=${tmp.dir}`))
      out.push(`${pid} ${spawnSync('cat', [`/proc/${pid}/cmdline`], { encoding: 'utf8' }).stdout.replace(/\0/g, ' ')}`);
  }
  return out;
}

async function nothingLeft(): Promise<void> {
  // libguestfs's recovery process (a fork of guestfish that kills QEMU if guestfish dies) notices QEMU's end within a few seconds.
  const end = Date.now() + 15_000;
  while (ourProcesses().length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 250));
  assert.deepEqual(ourProcesses(), [], 'no guestfish, QEMU or lifeboat process left');
  assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(tmp.dir), 'no FUSE tree left mounted');
  assert.deepEqual(await readdir(join(tmp.dir, 'lifeboat-files')).catch(() => []), [], 'no browse folder (socket, record) left');
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

before(async () => {
  tmp = await tempDir('lifeboat-files-test-');
  process.env['TMPDIR'] = tmp.dir;
  const a = join(tmp.dir, 'a.img');
  const b = join(tmp.dir, 'b.img');
  for (const img of [a, b]) sh('truncate', ['-s', '448M', img]);
  // One appliance builds both disks: b is a copy of a made before a's newer file content and its LVM volume (a, which the
  // appliance has partitioned, is the one changed afterwards: the copy's partitions need not have appeared yet).
  sh(
    'guestfish',
    ['-a', a, '-a', b],
    `run
part-init /dev/sda gpt
part-add /dev/sda p 2048 34815
part-add /dev/sda p 34816 100351
part-add /dev/sda p 100352 -34
mkfs vfat /dev/sda1 label:BOOT
mkfs ext4 /dev/sda2 label:data
mount /dev/sda2 /
mkdir-p /etc/nested/deep
write /etc/nested/deep/a.txt "older\\n"
write /etc/nested/b.txt "bbb\\n"
ln-s nested/deep/a.txt /etc/link
write /secret "s3cret\\n"
chmod 0640 /secret
chown 1000 1000 /secret
touch /sparse
truncate-size /sparse ${4 * MiB}
pwrite /sparse "DATA" ${MiB}
touch /old
utimens /old ${MTIME} 0 ${MTIME} 0
umount-all
copy-device-to-device /dev/sda /dev/sdb sparse:true
mount /dev/sda2 /
write /etc/nested/deep/a.txt "newer content\\n"
umount-all
pvcreate /dev/sda3
vgcreate vg0 /dev/sda3
lvcreate-free root vg0 100
mkfs xfs /dev/vg0/root
mount /dev/vg0/root /
write /on-xfs.txt "xfs here\\n"
umount-all
`,
  );
  repo = join(tmp.dir, 'repo');
  const disk = join(tmp.dir, 'disk.img');
  const run = async (args: string[]): Promise<string> => {
    const r = await cli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await run(['repo', 'init', repo]);
  sh('cp', ['--sparse=always', b, disk]);
  await run(['job', 'create', 'vm', '--repo', repo, '--disk', disk]);
  older = (JSON.parse(await run(['backup', 'vm', '--repo', repo, '--json'])) as { pointId: string }).pointId;
  sh('cp', ['--sparse=always', a, disk]);
  newer = (JSON.parse(await run(['backup', 'vm', '--repo', repo, '--json'])) as { pointId: string }).pointId;
  // A disk with no file system at all.
  const blank = join(tmp.dir, 'blank.img');
  sh('truncate', ['-s', '8M', blank]);
  await run(['job', 'create', 'blank', '--repo', repo, '--disk', blank]);
  await run(['backup', 'blank', '--repo', repo]);
});

after(async () => {
  // Whatever a failed case left: the sweep of the next browse would end it; here the test does.
  await cli(['files', 'umount', join(tmp.dir, 'mnt')]).catch(() => undefined);
  await tmp.cleanup();
});

test('one browse of the latest point: file systems, folders, get, sparse, tar, find, errors', async () => {
  let b: OpenedBrowse | undefined;
  try {
    b = await openBrowse((w) => ephemeralSource(repo, 'vm', 'latest', w, createLogger('error')));
    assert.equal(b.pointId, newer);
    const byId = new Map(b.browse.volumes.map((v) => [v.id, v]));
    assert.deepEqual([...byId.keys()].sort(), ['disk0', 'disk0p1', 'disk0p2', 'disk0p3', 'vg0/root']);
    assert.equal(byId.get('disk0')!.type, 'gpt');
    assert.deepEqual([byId.get('disk0p1')!.type, byId.get('disk0p1')!.label, byId.get('disk0p1')!.mounted], ['vfat', 'BOOT', true]);
    assert.deepEqual([byId.get('disk0p2')!.type, byId.get('disk0p2')!.label, byId.get('disk0p2')!.size], ['ext4', 'data', 32 * MiB]);
    assert.deepEqual([byId.get('vg0/root')!.type, byId.get('vg0/root')!.mounted], ['xfs', true]);
    assert.deepEqual(b.browse.fsIds().sort(), ['disk0p1', 'disk0p2', 'vg0/root']);

    const root = new Map((await list(b.browse, parseGuestPath('disk0p2:/'))).map((e) => [e.name, e]));
    assert.deepEqual([...root.keys()], ['etc', 'lost+found', 'old', 'secret', 'sparse']);
    assert.deepEqual([root.get('secret')!.mode, root.get('secret')!.uid, root.get('secret')!.gid, root.get('secret')!.size], [0o640, 1000, 1000, 7]);
    assert.equal(root.get('old')!.mtime, new Date(MTIME * 1000).toISOString());
    assert.equal(root.get('etc')!.type, 'directory');
    const etc = await list(b.browse, parseGuestPath('disk0p2:/etc'));
    const link = etc.find((e) => e.name === 'link')!;
    assert.deepEqual([link.type, link.target, link.path], ['symlink', 'nested/deep/a.txt', 'disk0p2:/etc/link']);
    assert.deepEqual(
      (await list(b.browse, parseGuestPath('vg0/root:/'))).map((e) => e.name),
      ['on-xfs.txt'],
    );

    // A file, then a folder, copied out: bytes, modes, owners, times, symlinks, holes.
    const out = join(tmp.dir, 'out');
    sh('mkdir', ['-p', out]);
    await get(b.browse, parseGuestPath('disk0p2:/secret'), join(out, 'secret'));
    assert.equal(await readFile(join(out, 'secret'), 'utf8'), 's3cret\n');
    const st = await stat(join(out, 'secret'));
    assert.deepEqual([st.mode & 0o7777, st.uid, st.gid], [0o640, 1000, 1000]);
    await get(b.browse, parseGuestPath('disk0p2:/'), join(out, 'all'));
    const a = await readFile(join(out, 'all', 'etc', 'nested', 'deep', 'a.txt'));
    assert.equal(sha(a), sha(Buffer.from('newer content\n')));
    assert.equal(await readlink(join(out, 'all', 'etc', 'link')), 'nested/deep/a.txt');
    assert.equal((await lstat(join(out, 'all', 'old'))).mtimeMs, MTIME * 1000);
    const sparse = await stat(join(out, 'all', 'sparse'));
    assert.equal(sparse.size, 4 * MiB);
    assert.ok(sparse.blocks * 512 <= 64 * 1024, `the sparse file stays sparse (${sparse.blocks} blocks allocated)`);
    const data = await readFile(join(out, 'all', 'sparse'));
    assert.equal(data.subarray(MiB, MiB + 4).toString(), 'DATA');
    assert.equal(sha(data), sha(Buffer.concat([Buffer.alloc(MiB), Buffer.from('DATA'), Buffer.alloc(3 * MiB - 4)])));
    await assert.rejects(get(b.browse, parseGuestPath('disk0p2:/secret'), join(out, 'secret')), (e: unknown) => isLifeboatError(e, 'LFB_ERR_TARGET_EXISTS'));

    // A tar of a folder: its entries, owners as numbers.
    const tarFile = join(tmp.dir, 'etc.tar');
    const chunks: Buffer[] = [];
    const { Writable } = await import('node:stream');
    await tar(
      b.browse,
      parseGuestPath('disk0p2:/etc'),
      new Writable({
        write(c: Buffer, _e, cb) {
          chunks.push(c);
          cb();
        },
      }),
    );
    await writeFile(tarFile, Buffer.concat(chunks));
    assert.deepEqual(
      sh('tar', ['-tf', tarFile])
        .split('\n')
        .filter((x) => x !== '')
        .sort(),
      ['etc/', 'etc/link', 'etc/nested/', 'etc/nested/b.txt', 'etc/nested/deep/', 'etc/nested/deep/a.txt'],
    );

    assert.deepEqual(await find(b.browse, parseGuestPath('disk0p2:/'), '*.txt'), ['disk0p2:/etc/nested/b.txt', 'disk0p2:/etc/nested/deep/a.txt']);
    await assert.rejects(list(b.browse, parseGuestPath('disk0p2:/nope')), (e: unknown) => isLifeboatError(e, 'LFB_ERR_FILE_NOT_FOUND'));
    await assert.rejects(list(b.browse, parseGuestPath('disk0p9:/')), (e: unknown) => isLifeboatError(e, 'LFB_ERR_FS_NOT_FOUND'));
    await assert.rejects(list(b.browse, parseGuestPath('/etc')), (e: unknown) => isLifeboatError(e, 'LFB_ERR_FS_NOT_FOUND'));
  } finally {
    await b?.close();
  }
  await nothingLeft();
});

test('the CLI: the older point through files ls, a disk without file systems', async () => {
  const ls = await cli(['files', 'ls', 'vm', '--repo', repo, '--point', older, 'disk0p2:/etc/nested/deep', '--json']);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stderr, /booting the libguestfs appliance/);
  const listed = JSON.parse(ls.stdout) as { point: string; entries: { name: string; size: number }[] };
  assert.equal(listed.point, older);
  assert.deepEqual(
    listed.entries.map((e) => [e.name, e.size]),
    [['a.txt', 'older\n'.length]],
  );
  await nothingLeft();

  const none = await cli(['files', 'ls', 'blank', '--repo', repo, '--point', 'latest']);
  assert.equal(none.code, 3, none.stderr);
  assert.match(none.stderr, /no readable file system.*\[LFB_ERR_NO_FILESYSTEM\]/s);
  await nothingLeft();
});

test('files mount keeps the tree at a folder until files umount', async () => {
  const mnt = join(tmp.dir, 'mnt');
  const m = await cli(['files', 'mount', 'vm', mnt, '--repo', repo, '--point', newer, '--json']);
  assert.equal(m.code, 0, m.stderr);
  const info = JSON.parse(m.stdout) as { pid: number; guestfishPid: number; qemuPid: number };
  try {
    assert.equal(await readFile(join(mnt, 'disk0p2', 'etc', 'nested', 'deep', 'a.txt'), 'utf8'), 'newer content\n');
    assert.equal(await readFile(join(mnt, 'vg0', 'root', 'on-xfs.txt'), 'utf8'), 'xfs here\n');
    await assert.rejects(writeFile(join(mnt, 'disk0p2', 'new'), 'x'), /EROFS|EACCES|EPERM/);
    // A second mount at the same folder is refused while the first holds it.
    const again = await cli(['files', 'mount', 'vm', mnt, '--repo', repo, '--point', newer]);
    assert.equal(again.code, 5, again.stderr);
  } finally {
    const u = await cli(['files', 'umount', mnt]);
    assert.equal(u.code, 0, u.stderr);
  }
  for (const pid of [info.pid, info.guestfishPid, info.qemuPid]) assert.throws(() => process.kill(pid, 0), `pid ${pid} has ended`);
  assert.deepEqual(await readdir(mnt), []);
  const u2 = await cli(['files', 'umount', mnt]);
  assert.equal(u2.code, 3, u2.stderr);
  assert.match(u2.stderr, /LFB_ERR_MOUNT_NOT_FOUND/);
  await nothingLeft();

  // A keeper killed with -9 leaves its appliance and tree: files umount ends them from the record.
  const k = await cli(['files', 'mount', 'vm', mnt, '--repo', repo, '--point', older, '--json']);
  assert.equal(k.code, 0, k.stderr);
  const killed = JSON.parse(k.stdout) as { pid: number; guestfishPid: number; qemuPid: number };
  assert.equal(await readFile(join(mnt, 'disk0p2', 'etc', 'nested', 'deep', 'a.txt'), 'utf8'), 'older\n', 'the older point holds the older content');
  assert.deepEqual(await readdir(mnt), ['disk0p1', 'disk0p2'], 'the older point had no LVM volume yet');
  process.kill(killed.pid, 'SIGKILL');
  const u3 = await cli(['files', 'umount', mnt]);
  assert.equal(u3.code, 0, u3.stderr);
  for (const pid of [killed.pid, killed.guestfishPid, killed.qemuPid]) assert.throws(() => process.kill(pid, 0), `pid ${pid} has ended`);
  await nothingLeft();
});
