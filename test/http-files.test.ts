/**
 * File-level recovery through a real `lifeboat serve`: the point's volumes
 * and folders over the HTTP API, downloads of a file and of a folder (tar),
 * one appliance per point reused by every request, DELETE, the idle
 * timeout, a disk with no file system, a symlink leading out of the guest.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from './helpers.js';
import { Api, adminToken, lifeboat, waitFor } from './service-e2e-helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

// KVM aborts on some CI hosts: the appliance runs under TCG unless the environment says otherwise.
process.env['LIBGUESTFS_BACKEND'] ??= 'direct';
process.env['LIBGUESTFS_BACKEND_SETTINGS'] ??= 'force_tcg';
process.env['LIBGUESTFS_CACHEDIR'] ??= '/var/tmp';

const MiB = 1024 * 1024;
const MTIME = 1_500_000_000;
const IDLE_S = 4;
const FILES = '/api/v1/repositories/{repo}/jobs/{job}/points/{point}/files';
let tmp: { dir: string; cleanup: () => Promise<void> };
let repo = '';
let server: Server | undefined;
let api: Api;
let token = '';
let bigSha = '';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const sh = (cmd: string, args: string[], input?: string): string =>
  execFileSync(cmd, args, { encoding: 'utf8', timeout: 300_000, ...(input !== undefined ? { input } : {}), maxBuffer: 64 * MiB });

/** guestfish and QEMU processes this test's server started (they carry the test's TMPDIR). */
function appliances(): string[] {
  const out: string[] = [];
  for (const pid of (spawnSync('ls', ['/proc'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((x) => /^\d+$/.test(x))) {
    const env = spawnSync('cat', [`/proc/${pid}/environ`], { encoding: 'utf8' }).stdout ?? '';
    if (!env.split('\0').includes(`TMPDIR=${tmp.dir}`)) continue;
    const cmd = (spawnSync('cat', [`/proc/${pid}/cmdline`], { encoding: 'utf8' }).stdout ?? '').replace(/\0/g, ' ');
    if (/guestfish|qemu/.test(cmd)) out.push(`${pid} ${cmd.slice(0, 120)}`);
  }
  return out;
}

async function noAppliance(): Promise<void> {
  // libguestfs's recovery process notices QEMU's end within a few seconds.
  await waitFor('no guestfish or QEMU left', 20_000, async () => (appliances().length === 0 ? true : undefined), 250).catch(() => undefined);
  assert.deepEqual(appliances(), [], 'no guestfish or QEMU process left');
  assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(tmp.dir), 'no FUSE tree left mounted');
}

async function download(point: string, path: string): Promise<{ status: number; type: string; disposition: string; body: Buffer }> {
  const url = `${server!.httpUrl}/repositories/repo/jobs/vm/points/${point}/files/download?path=${encodeURIComponent(path)}`;
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    disposition: res.headers.get('content-disposition') ?? '',
    body: Buffer.from(await res.arrayBuffer()),
  };
}

type Sessions = { sessions: { job: string; pointId: string; state: string; idleDeadline?: string }[]; idleTimeoutSeconds: number };
const sessions = (): Promise<Sessions> => api.call<Sessions>('GET', '/api/v1/files/sessions');
type Listing = {
  pointId: string;
  volumes: { id: string; kind: string; type?: string; label?: string; mounted: boolean }[];
  entries?: { name: string; type: string; mode: number; uid: number; gid: number; mtime: string; size: number; target?: string }[];
};

before(async () => {
  tmp = await tempDir('lifeboat-http-files-');
  process.env['TMPDIR'] = tmp.dir;
  const disk = join(tmp.dir, 'disk.img');
  const big = join(tmp.dir, 'big.bin');
  const bytes = randomBytes(3 * MiB);
  bigSha = sha(bytes);
  await writeFile(big, bytes);
  sh('truncate', ['-s', '64M', disk]);
  sh(
    'guestfish',
    ['-a', disk],
    `run
part-disk /dev/sda gpt
mkfs ext4 /dev/sda1 label:data
mount /dev/sda1 /
mkdir-p /etc/nested/deep
write /etc/nested/deep/a.txt "content\\n"
ln-s nested/deep/a.txt /etc/link
write /secret "s3cret\\n"
chmod 0640 /secret
chown 1000 1000 /secret
touch /old
utimens /old ${MTIME} 0 ${MTIME} 0
upload ${big} /big.bin
ln-s / /escape
umount-all
`,
  );
  repo = join(tmp.dir, 'repo');
  await lifeboat(['repo', 'init', repo]);
  await lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', disk]);
  await lifeboat(['backup', 'vm', '--repo', repo]);
  const blank = join(tmp.dir, 'blank.img');
  sh('truncate', ['-s', '8M', blank]);
  await lifeboat(['job', 'create', 'blank', '--repo', repo, '--disk', blank]);
  await lifeboat(['backup', 'blank', '--repo', repo]);
  token = await adminToken(repo);
  server = await startServer(repo, ['--no-portmap', '--no-scheduler', '--files-idle-timeout', `${IDLE_S}s`]);
  api = await Api.connect(server.httpUrl, token);
});

after(async () => {
  try {
    if (server && server.proc.exitCode === null) await kill9(server);
    // A case that failed midway may leave an appliance of the killed server: end what carries this test's TMPDIR.
    for (const p of appliances()) process.kill(Number(p.split(' ')[0]), 'SIGKILL');
    spawnSync('sh', ['-c', `grep -o ' ${tmp.dir}[^ ]*' /proc/self/mountinfo | xargs -r -n1 fusermount3 -uz`], { timeout: 30_000 });
  } finally {
    await tmp.cleanup();
  }
});

test('volumes, a folder, a file and a folder downloaded, one appliance for every request, parallel reads, DELETE', async () => {
  const vol = await api.call<Listing>('GET', FILES, { repo: 'repo', job: 'vm', point: 'latest' });
  const byId = new Map(vol.volumes.map((v) => [v.id, v]));
  assert.deepEqual([...byId.keys()], ['disk0', 'disk0p1']);
  assert.deepEqual(
    [byId.get('disk0')!.type, byId.get('disk0p1')!.type, byId.get('disk0p1')!.label, byId.get('disk0p1')!.mounted],
    ['gpt', 'ext4', 'data', true],
  );
  const point = vol.pointId;
  const gf = appliances().filter((p) => p.includes('guestfish'));
  assert.ok(gf.length >= 1, 'a guestfish runs');

  const root = await api.call<Listing>('GET', FILES, { repo: 'repo', job: 'vm', point }, { path: 'disk0p1:/' });
  const e = new Map(root.entries!.map((x) => [x.name, x]));
  assert.deepEqual([...e.keys()], ['big.bin', 'escape', 'etc', 'lost+found', 'old', 'secret']);
  assert.deepEqual([e.get('secret')!.mode, e.get('secret')!.uid, e.get('secret')!.gid, e.get('secret')!.size], [0o640, 1000, 1000, 7]);
  assert.equal(e.get('old')!.mtime, new Date(MTIME * 1000).toISOString());
  assert.equal(e.get('etc')!.type, 'directory');
  const etc = await api.call<Listing>('GET', FILES, { repo: 'repo', job: 'vm', point }, { path: 'disk0p1:/etc' });
  assert.deepEqual(
    etc.entries!.map((x) => [x.name, x.type, x.target ?? null]),
    [
      ['link', 'symlink', 'nested/deep/a.txt'],
      ['nested', 'directory', null],
    ],
  );

  const file = await download(point, 'disk0p1:/big.bin');
  assert.equal(file.status, 200);
  assert.equal(file.type, 'application/octet-stream');
  assert.match(file.disposition, /attachment; filename="big\.bin"/);
  assert.equal(sha(file.body), bigSha);

  const folder = await download(point, 'disk0p1:/etc');
  assert.equal(folder.status, 200);
  assert.equal(folder.type, 'application/x-tar');
  await writeFile(join(tmp.dir, 'etc.tar'), folder.body);
  assert.deepEqual(
    sh('tar', ['-tf', join(tmp.dir, 'etc.tar')])
      .split('\n')
      .filter((x) => x !== '')
      .sort(),
    ['etc/', 'etc/link', 'etc/nested/', 'etc/nested/deep/', 'etc/nested/deep/a.txt'],
  );

  // Downloads and listings at once all finish (the session's guestfish commands wait in one queue, and a download's bytes come
  // through a named pipe read by a child cat, never Node's thread pool, which the NBD export's reads need). It guards, it does not prove.
  const started = Date.now();
  const parallel = await Promise.all([
    download(point, 'disk0p1:/big.bin'),
    download(point, 'disk0p1:/big.bin'),
    ...['disk0p1:/', 'disk0p1:/etc', 'disk0p1:/etc/nested', 'disk0p1:/etc/nested/deep', 'disk0p1:/lost+found', 'disk0p1:/etc/link'].map((path) =>
      api.call<Listing>('GET', FILES, { repo: 'repo', job: 'vm', point }, { path }),
    ),
  ]);
  assert.ok(Date.now() - started < 60_000);
  for (const d of parallel.slice(0, 2) as { body: Buffer }[]) assert.equal(sha(d.body), bigSha);
  assert.equal((parallel[5] as Listing).entries![0]!.name, 'a.txt');

  const found = await api.call<{ paths: string[] }>('GET', `${FILES}/find`, { repo: 'repo', job: 'vm', point }, { name: '*.txt' });
  assert.deepEqual(found.paths, ['disk0p1:/etc/nested/deep/a.txt']);

  // Errors with their codes; a symlink on the way may not lead into the host's own tree.
  const err = async (path: string, status: number, code: string): Promise<void> => {
    const r = await api.call<{ code: string }>('GET', FILES, { repo: 'repo', job: 'vm', point }, { path }, status);
    assert.equal(r.code, code, path);
  };
  await err('disk0p1:/nope', 404, 'LFB_ERR_FILE_NOT_FOUND');
  await err('disk0p9:/', 404, 'LFB_ERR_FS_NOT_FOUND');
  await err('disk0p1:/escape/etc', 422, 'LFB_ERR_INVALID_ARGUMENT');
  assert.equal((await download(point, 'disk0p1:/escape/etc/hostname')).status, 422);
  assert.equal((await download(point, 'disk0p1:/etc/link')).status, 422);

  // Every request used the one session: one point, one guestfish.
  const open = await sessions();
  assert.deepEqual(
    open.sessions.map((s) => [s.job, s.pointId, s.state]),
    [['vm', point, 'open']],
  );
  assert.ok(open.sessions[0]!.idleDeadline !== undefined);
  assert.deepEqual(
    appliances().filter((p) => p.includes('guestfish')),
    gf,
  );
  // The point is held against retention while its session is open.
  assert.ok((await readdir(join(repo, 'jobs', 'vm', 'holds'))).some((n) => n.startsWith('files-')));

  assert.deepEqual(await api.call('DELETE', FILES, { repo: 'repo', job: 'vm', point }), { closed: true });
  assert.deepEqual((await sessions()).sessions, []);
  await noAppliance();
  assert.deepEqual(await api.call('DELETE', FILES, { repo: 'repo', job: 'vm', point }), { closed: false });
});

test('a disk with no file system: LFB_ERR_NO_FILESYSTEM, and the server goes on; an unused session closes after the idle timeout', async () => {
  const none = await api.call<{ code: string; message: string }>('GET', FILES, { repo: 'repo', job: 'blank', point: 'latest' }, {}, 404);
  assert.equal(none.code, 'LFB_ERR_NO_FILESYSTEM');
  // A point never changes: within the idle time (IDLE_S here) the next request gets the same answer at once,
  // saying when it was found, without booting another appliance (12-30 s under TCG).
  const t0 = Date.now();
  const again = await api.call<{ code: string; message: string }>('GET', FILES, { repo: 'repo', job: 'blank', point: 'latest' }, {}, 404);
  assert.equal(again.code, 'LFB_ERR_NO_FILESYSTEM');
  assert.match(again.message, /found when point \S+ was opened at \S+; the same answer until/);
  assert.ok(Date.now() - t0 < 3000, `the remembered answer took ${Date.now() - t0} ms`);
  // Closing the point's session forgets the answer (the next request boots an appliance to look again).
  assert.deepEqual(await api.call('DELETE', FILES, { repo: 'repo', job: 'blank', point: 'latest' }), { closed: true });
  assert.deepEqual(await api.call('DELETE', FILES, { repo: 'repo', job: 'blank', point: 'latest' }), { closed: false });
  assert.deepEqual((await sessions()).sessions, []);
  await noAppliance();

  const vol = await api.call<Listing>('GET', FILES, { repo: 'repo', job: 'vm', point: 'latest' });
  assert.equal(vol.volumes.find((v) => v.id === 'disk0p1')!.mounted, true);
  assert.equal((await sessions()).idleTimeoutSeconds, IDLE_S);
  assert.equal((await sessions()).sessions.length, 1);
  await waitFor('the idle session to close', IDLE_S * 1000 + 30_000, async () => ((await sessions()).sessions.length === 0 ? true : undefined), 500);
  await noAppliance();
});

test('serve stops with a session open: the session ends with it', async () => {
  await api.call<Listing>('GET', FILES, { repo: 'repo', job: 'vm', point: 'latest' });
  assert.ok(appliances().length > 0);
  const s = server!;
  s.proc.kill('SIGTERM');
  const t = setTimeout(() => s.proc.kill('SIGKILL'), 60_000);
  await s.exited;
  clearTimeout(t);
  assert.equal(s.proc.exitCode, 0, s.log().slice(-2000));
  await noAppliance();
  assert.deepEqual(await readdir(join(tmp.dir, 'lifeboat-files')).catch(() => []), [], 'no browse folder left');
});
