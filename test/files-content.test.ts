/**
 * File-level recovery, byte for byte: a job of three disks (ext4, NTFS and
 * btrfs, each a whole-disk file system built from a folder without an
 * appliance) backed up twice, the second time after the trees changed; both
 * points listed and downloaded through one `lifeboat serve`'s API, and what
 * came out compared with the source tree as it was at that point: sha256,
 * mode, owners, mtime (ns), symlink targets, hard links, holes. The ext4 tree
 * holds UTF-8 names, 10k files in one folder and a 200 MiB file. Then a
 * damaged ext4 (zeroed superblock) and a disk of random bytes: a clear error,
 * and the server goes on.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, chown, link, lutimes, mkdir, open, readFile, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { tempDir } from './helpers.js';
import { Api, adminToken, lifeboat, waitFor } from './service-e2e-helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';
import { appliances, assertSameTree, manifest, saveBody, seeded, seededChunks, sha256Of, type Node } from './files-harness.js';

// KVM aborts on some CI hosts: the appliance runs under TCG unless the environment says otherwise.
process.env['LIBGUESTFS_BACKEND'] ??= 'direct';
process.env['LIBGUESTFS_BACKEND_SETTINGS'] ??= 'force_tcg';
process.env['LIBGUESTFS_CACHEDIR'] ??= '/var/tmp';

const MiB = 1024 * 1024;
const T = 1_600_000_000;
const MANY = 10_000;
const BIG = 200 * MiB;
const FILES = '/api/v1/repositories/{repo}/jobs/{job}/points/{point}/files';
const UTF8 = 'café/naïve 文件.txt';

let tmp: { dir: string; cleanup: () => Promise<void> };
let server: Server | undefined;
let api: Api;
let token = '';
const points: Record<'A' | 'B', string> = { A: '', B: '' };
/** The source trees at each point: disk0 ext4, disk1 NTFS, disk2 btrfs. */
const want: Record<'A' | 'B', Map<string, Node>[]> = { A: [], B: [] };

type Entry = { name: string; path: string; type: string; size: number; mode: number; uid: number; gid: number; mtime: string; target?: string };
type Listing = { pointId: string; volumes: { id: string; kind: string; type?: string; mounted: boolean }[]; entries?: Entry[] };

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', timeout: 300_000, maxBuffer: 64 * MiB });

async function put(path: string, content: string | Buffer, mtime: Date, mode = 0o644): Promise<void> {
  await writeFile(path, content);
  await chmod(path, mode);
  await utimes(path, mtime, mtime);
}

/**
 * The source tree of a point. `full` (the ext4 disk) adds the 10k-file folder, the 200 MiB file, a 64 MiB
 * sparse file, owners and a setuid bit. Point B changes content, mtimes and a mode, removes and adds files.
 * mtimes have quarter-second fractions (NTFS keeps 100 ns), but not in the ext4 tree: mkfs.ext4 -d (e2fsprogs
 * 1.47.0) writes whole seconds, as mkfs.btrfs --rootdir does.
 */
async function buildTree(dir: string, point: 'A' | 'B', full: boolean): Promise<void> {
  const B = point === 'B';
  const at = (s: number): Date => new Date((full ? Math.floor(s) : s) * 1000);
  await mkdir(join(dir, 'café'), { recursive: true });
  await put(join(dir, UTF8), B ? 'bonjour, changed at B\n' : 'bonjour\n', at(B ? T + 5000.5 : T + 1.25));
  const emoji = join(dir, 'café', full ? 'emoji 🚀 it\'s "q".txt' : 'emoji 🚀.txt');
  await put(emoji, '🚀\n', at(T + 2.75), 0o600);
  await mkdir(join(dir, 'links'));
  await put(join(dir, 'links', 'target.txt'), 'target\n', at(T + 3));
  await put(join(dir, 'links', 'hard1'), B ? 'hard link, B\n' : 'hard link\n', at(B ? T + 5001 : T + 4));
  await link(join(dir, 'links', 'hard1'), join(dir, 'links', 'hard2'));
  for (const [name, target] of [['rel', 'target.txt'], ['dangling', '../nowhere/文件'], ...(full ? [['abs', '/etc/hostname']] : [])] as const) {
    await symlink(target, join(dir, 'links', name));
    await lutimes(join(dir, 'links', name), at(T + 5.5), at(T + 5.5));
  }
  // Holes: data at 1 MiB and (full) 33 MiB, the rest never written.
  await mkdir(join(dir, 'holes'));
  const sparse = join(dir, 'holes', 'sparse.bin');
  await writeFile(sparse, '');
  await truncate(sparse, (full ? 64 : 8) * MiB);
  const fh = await open(sparse, 'r+');
  await fh.write(seeded('sparse-1', 4096), 0, 4096, MiB);
  if (full) await fh.write(seeded('sparse-2', 4096), 0, 4096, 33 * MiB);
  await fh.close();
  await utimes(sparse, at(T + 6), at(T + 6));
  await put(join(dir, 'empty.txt'), '', at(T + 7));
  await mkdir(join(dir, 'empty'));
  if (B) {
    await mkdir(join(dir, 'added'));
    await put(join(dir, 'added', 'inner.txt'), 'new at B\n', at(T + 5002));
  } else await put(join(dir, 'removed.txt'), 'gone at B\n', at(T + 8));
  if (full) {
    await chown(emoji, 1000, 1001);
    await put(join(dir, 'setuid.sh'), '#!/bin/sh\n', at(T + 9), B ? 0o755 : 0o4755);
    await mkdir(join(dir, 'many'));
    for (let i = 0; i < MANY; i++) {
      if (B && i === MANY - 1) continue;
      const changed = B && i % 100 === 7;
      await put(join(dir, 'many', `f${String(i).padStart(5, '0')}.txt`), `file ${i}${changed ? ' changed' : ''}\n`, at(changed ? T + 6000 + i : T + 100 + i));
    }
    if (B) await put(join(dir, 'many', 'nouveau 文件.txt'), 'new\n', at(T + 5003));
    const big = join(dir, 'big.bin');
    const out = createWriteStream(big);
    for (const c of seededChunks('big', BIG)) if (!out.write(c)) await new Promise((r) => out.once('drain', r));
    await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
    if (B) {
      const b = await open(big, 'r+');
      await b.write(seeded('big-B', MiB), 0, MiB, 100 * MiB);
      await b.close();
    }
    await utimes(big, at(B ? T + 5004 : T + 10), at(B ? T + 5004 : T + 10));
    await chmod(join(dir, 'many'), 0o750);
    await utimes(join(dir, 'many'), at(T + 11.5), at(T + 11.5));
  }
  await chmod(join(dir, 'café'), 0o750);
  const dirs: [string, number][] = [['café', 12], ['links', 13], ['empty', 14], ['holes', 17], ...(B ? [['added', 15] as [string, number]] : []), ['', 16]];
  for (const [d, s] of dirs) await utimes(join(dir, d), at(T + s), at(T + s));
}

/** An NTFS image holding `src`, filled through ntfs-3g on the host (in the foreground: its umount has written everything when it exits). */
async function ntfsImage(src: string, img: string, mnt: string): Promise<void> {
  sh('truncate', ['-s', '32M', img]);
  sh('mkntfs', ['-F', '-Q', '-q', img]);
  await mkdir(mnt, { recursive: true });
  const fuse = spawn('ntfs-3g', ['-o', 'no_detach', img, mnt], { stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => fuse.once('exit', r));
  try {
    await waitFor('the NTFS image mounted', 10_000, async () => ((await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${mnt} `) ? true : undefined));
    sh('cp', ['-a', '--sparse=always', `${src}/.`, `${mnt}/`]);
  } finally {
    spawnSync('umount', [mnt]);
  }
  assert.equal(await exited, 0, 'ntfs-3g ended cleanly');
}

async function images(dir: string, p: 'A' | 'B'): Promise<void> {
  const [full, small] = [join(dir, `src-${p}`), join(dir, `src-${p}-small`)];
  await buildTree(full, p, true);
  await buildTree(small, p, false);
  // 256-byte inodes (ns times) and room for the 10k files; the same size and command for both points (the job's disks do not change size).
  sh('truncate', ['-s', '400M', join(dir, 'ext4.img')]);
  sh('mkfs.ext4', ['-q', '-F', '-I', '256', '-N', '16384', '-b', '4096', '-E', 'root_owner=0:0', '-d', full, join(dir, 'ext4.img')]);
  await ntfsImage(small, join(dir, 'ntfs.img'), join(dir, 'ntfs-mnt'));
  sh('truncate', ['-s', '128M', join(dir, 'btrfs.img')]);
  sh('mkfs.btrfs', ['-q', '-f', '--rootdir', small, join(dir, 'btrfs.img')]);
  // mkfs.btrfs --rootdir (btrfs-progs 6.2) writes whole seconds too (seen on a loop mount of its image): btrfs is expected to.
  const seconds = (m: Map<string, Node>) =>
    new Map([...m].map(([k, n]) => [k, { ...n, mtimeNs: ((BigInt(n.mtimeNs) / 1_000_000_000n) * 1_000_000_000n).toString() }]));
  want[p] = [await manifest(full), await manifest(small), seconds(await manifest(small))];
}

const backup = async (job: string): Promise<string> =>
  (JSON.parse(await lifeboat(['backup', job, '--repo', join(tmp.dir, 'repo'), '--json'])) as { pointId: string }).pointId;

before(async () => {
  tmp = await tempDir('lifeboat-files-content-');
  process.env['TMPDIR'] = tmp.dir;
  const repo = join(tmp.dir, 'repo');
  const started = performance.now();
  await lifeboat(['repo', 'init', repo]);
  await images(tmp.dir, 'A');
  await lifeboat(['job', 'create', 'vm', '--repo', repo, ...['ext4', 'ntfs', 'btrfs'].flatMap((d) => ['--disk', join(tmp.dir, `${d}.img`)])]);
  points.A = await backup('vm');
  await images(tmp.dir, 'B');
  points.B = await backup('vm');

  // A damaged ext4: a good one (dumpe2fs reads it) until its superblock is zeroed.
  const broken = join(tmp.dir, 'broken.img');
  sh('truncate', ['-s', '16M', broken]);
  sh('mkfs.ext4', ['-q', '-F', '-d', join(tmp.dir, 'src-A-small'), broken]);
  sh('dumpe2fs', ['-h', broken]);
  const fh = await open(broken, 'r+');
  await fh.write(Buffer.alloc(1024), 0, 1024, 1024);
  await fh.close();
  assert.notEqual(spawnSync('dumpe2fs', ['-h', broken]).status, 0, 'the superblock is gone');
  await writeFile(join(tmp.dir, 'noise.img'), seeded('noise', 16 * MiB));
  for (const job of ['broken', 'noise']) {
    await lifeboat(['job', 'create', job, '--repo', repo, '--disk', join(tmp.dir, `${job}.img`)]);
    await backup(job);
  }
  token = await adminToken(repo);
  server = await startServer(repo, ['--no-portmap', '--no-scheduler']);
  api = await Api.connect(server.httpUrl, token);
  console.log(`# fixture (trees, images, 4 backups, server): ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

after(async () => {
  try {
    if (server && server.proc.exitCode === null) await kill9(server);
    for (const p of appliances(tmp.dir)) process.kill(Number(p.split(' ')[0]), 'SIGKILL');
    spawnSync('sh', ['-c', `grep -o ' ${tmp.dir}[^ ]*' /proc/self/mountinfo | xargs -r -n1 umount -l`], { timeout: 30_000 });
  } finally {
    await tmp.cleanup();
  }
});

const list = (point: string, path?: string, job = 'vm', status = 200): Promise<Listing> =>
  api.call<Listing>('GET', FILES, { repo: 'repo', job, point }, path === undefined ? {} : { path }, status);

async function download(point: string, path: string, to: string): Promise<Response> {
  const res = await fetch(`${server!.httpUrl}/repositories/repo/jobs/vm/points/${point}/files/download?path=${encodeURIComponent(path)}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  await saveBody(res, to);
  return res;
}

/** A folder of the point as a tar, unpacked (as root: owners and modes as archived) into `into`. */
async function downloadTree(point: string, path: string, into: string): Promise<void> {
  const file = `${into}.tar`;
  await mkdir(dirname(file), { recursive: true });
  const res = await download(point, path, file);
  assert.equal(res.headers.get('content-type'), 'application/x-tar');
  await mkdir(into, { recursive: true });
  sh('tar', ['-x', '-f', file, '-C', into, '--numeric-owner', '--same-permissions']);
  await rm(file);
}

/** Listing entries against the source's manifest (the API gives mtimes in ms). */
function assertEntries(entries: Entry[], tree: Map<string, Node>, dir: string, what: string): void {
  const prefix = dir === '' ? '' : `${dir}/`;
  const names = [...tree.keys()].filter((p) => p.startsWith(prefix) && p !== dir && !p.slice(prefix.length).includes('/')).map((p) => p.slice(prefix.length));
  assert.deepEqual(
    entries.map((e) => e.name),
    names.sort(),
    `${what}: the names listed`,
  );
  const bad: string[] = [];
  for (const e of entries) {
    const n = tree.get(prefix + e.name)!;
    const w = { type: n.type, mode: n.mode, uid: n.uid, gid: n.gid, mtime: new Date(Number(BigInt(n.mtimeNs) / 1_000_000n)).toISOString() };
    const g = { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime };
    if (JSON.stringify(g) !== JSON.stringify(w)) bad.push(`${e.name}: ${JSON.stringify(g)} != ${JSON.stringify(w)}`);
    if (n.type === 'file' && e.size !== n.size) bad.push(`${e.name}: size ${e.size} != ${n.size}`);
    if (n.type === 'symlink' && e.target !== n.target) bad.push(`${e.name}: target ${e.target} != ${n.target}`);
  }
  assert.deepEqual(bad.slice(0, 20), [], `${what}: ${bad.length} entries differ from the source`);
}

/**
 * Which fields each file system keeps: NTFS has no POSIX modes or owners (ntfs-3g shows 0777, root).
 * ext4's hard links (links/hard1 and hard2) come out as links (nlink, sameInode): the folder's tar is made
 * by tar-out inside the appliance, which sees the guest's own inode numbers.
 */
const KEPT: (keyof Node)[][] = [
  ['type', 'mode', 'uid', 'gid', 'mtimeNs', 'size', 'sha256', 'target', 'nlink', 'sameInode'],
  ['type', 'mtimeNs', 'size', 'sha256', 'target'],
  ['type', 'mode', 'uid', 'gid', 'mtimeNs', 'size', 'sha256', 'target'],
];

test('a damaged ext4 and a disk of random bytes: LFB_ERR_NO_FILESYSTEM, the server goes on; then a healthy point opens', async () => {
  const t0 = performance.now();
  const [broken, noise] = await Promise.all(
    ['broken', 'noise'].map((job) => api.call<{ code: string; message: string }>('GET', FILES, { repo: 'repo', job, point: 'latest' }, {}, 404)),
  );
  for (const r of [broken!, noise!]) {
    assert.equal(r.code, 'LFB_ERR_NO_FILESYSTEM');
    assert.match(r.message, /no readable file system \(disk0: /);
  }
  assert.deepEqual((await api.call<{ sessions: unknown[] }>('GET', '/api/v1/files/sessions')).sessions, [], 'a failed open leaves no session');
  await waitFor('no appliance left', 20_000, async () => (appliances(tmp.dir).length === 0 ? true : undefined), 250);
  assert.equal(server!.proc.exitCode, null, 'the server runs');
  const t1 = performance.now();

  const vol = await list(points.A);
  assert.deepEqual(
    vol.volumes.map((v) => [v.id, v.kind, v.type, v.mounted]),
    [
      ['disk0', 'disk', 'ext4', true],
      ['disk1', 'disk', 'ntfs', true],
      ['disk2', 'disk', 'btrfs', true],
    ],
  );
  console.log(
    `# two failed opens at once: ${((t1 - t0) / 1000).toFixed(1)} s; the healthy point's first listing: ${((performance.now() - t1) / 1000).toFixed(1)} s`,
  );
});

for (const p of ['A', 'B'] as const) {
  test(`point ${p}: listings and downloads of the three file systems match the source at that point`, async () => {
    const point = points[p];
    const out = join(tmp.dir, `out-${p}`);
    const [ext4] = want[p];
    let t = performance.now();
    const lap = (what: string): void => {
      console.log(`# point ${p}: ${what} ${((performance.now() - t) / 1000).toFixed(1)} s`);
      t = performance.now();
    };
    const root = (await list(point, 'disk0:/')).entries!.filter((e) => e.name !== 'lost+found');
    assertEntries(root, ext4!, '', `point ${p} disk0:/`);
    assertEntries((await list(point, 'disk0:/links')).entries!, ext4!, 'links', `point ${p} disk0:/links`);
    lap('first listings');
    // The 10k folder, listed whole.
    const many = (await list(point, 'disk0:/many')).entries!;
    assert.equal(many.length, MANY);
    assertEntries(many, ext4!, 'many', `point ${p} disk0:/many`);
    lap(`listing of ${many.length} files`);

    // The 200 MiB file alone (as it is, with its length), and a file with a UTF-8 name.
    const big = join(tmp.dir, `big-${p}.bin`);
    const res = await download(point, 'disk0:/big.bin', big);
    assert.equal(res.headers.get('content-length'), String(BIG));
    assert.equal(await sha256Of(big), ext4!.get('big.bin')!.sha256);
    await rm(big);
    lap('200 MiB download');
    // Every other top-level file.
    for (const e of root.filter((x) => x.type === 'file' && x.name !== 'big.bin')) {
      await download(point, `disk0:/${e.name}`, join(tmp.dir, 'one'));
      assert.equal(await sha256Of(join(tmp.dir, 'one')), ext4!.get(e.name)!.sha256, e.name);
      await rm(join(tmp.dir, 'one'));
    }
    const named = join(tmp.dir, `named-${p}`);
    const r2 = await download(point, `disk0:/${UTF8}`, named);
    assert.equal(r2.headers.get('content-disposition'), `attachment; filename="na_ve __.txt"; filename*=UTF-8''${encodeURIComponent('naïve 文件.txt')}`);
    assert.equal(await sha256Of(named), ext4!.get(UTF8)!.sha256);

    // Every folder of disk0 as a tar (the 10k folder too), then NTFS and btrfs whole.
    const ext4Out = join(out, 'disk0');
    for (const e of root.filter((x) => x.type === 'directory')) await downloadTree(point, `disk0:/${e.name}`, ext4Out);
    lap('tars of the folders of disk0');
    const got = await manifest(ext4Out);
    // Top-level files are checked above (big.bin) or by listing; here the folders' every path.
    const folders = new Map([...ext4!].filter(([k]) => k.includes('/') || ext4!.get(k)!.type === 'directory'));
    assertSameTree(got, folders, `point ${p} disk0 (ext4)`, { fields: KEPT[0]!, ignorePaths: [''] });
    assert.ok((await stat(join(ext4Out, 'many'))).isDirectory());
    for (const d of [1, 2]) {
      await downloadTree(point, `disk${d}:/`, join(out, `disk${d}`));
      // The archive's one top entry is the file system's id; NTFS's root holds its own system folder.
      assertSameTree(await manifest(join(out, `disk${d}`, `disk${d}`), ['lost+found', 'System Volume Information']), want[p][d]!, `point ${p} disk${d}`, {
        fields: KEPT[d]!,
        ignorePaths: [''],
      });
    }
    lap('tars of disk1 (NTFS) and disk2 (btrfs)');
    // The sparse file came in its folder's tar (its bytes compared above): its holes are kept.
    const sp = await stat(join(ext4Out, 'holes', 'sparse.bin'));
    assert.ok(sp.size === 64 * MiB && sp.blocks * 512 <= 256 * 1024, `holes/sparse.bin stays sparse (${sp.size} bytes, ${sp.blocks} blocks)`);
    await rm(out, { recursive: true, force: true });
  });
}

test('every session is one appliance, and closes when asked', async () => {
  const s = await api.call<{ sessions: { pointId: string; state: string }[] }>('GET', '/api/v1/files/sessions');
  assert.deepEqual(s.sessions.map((x) => x.pointId).sort(), [points.A, points.B].sort());
  assert.equal(appliances(tmp.dir).filter((x) => x.includes('qemu')).length, 2, appliances(tmp.dir).join('\n'));
  for (const point of [points.A, points.B]) assert.deepEqual(await api.call('DELETE', FILES, { repo: 'repo', job: 'vm', point }), { closed: true });
  await waitFor('no appliance left', 20_000, async () => (appliances(tmp.dir).length === 0 ? true : undefined), 250);
});
