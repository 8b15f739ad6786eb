import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BackupFileReader } from '../src/repository/backup-file.js';
import { Repository } from '../src/repository/repository.js';
import { cli, expectOk, filesUnder, randomBytes, rng, tempDir, writeAt } from './helpers.js';
import { startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);
// The server's file-level recovery boots a libguestfs appliance: under TCG (KVM aborts on some CI hosts).
process.env['LIBGUESTFS_BACKEND'] ??= 'direct';
process.env['LIBGUESTFS_BACKEND_SETTINGS'] ??= 'force_tcg';
process.env['LIBGUESTFS_CACHEDIR'] ??= '/var/tmp';
const BS = 256 * 1024;
const SIZE = 40 * BS + 1234;
const MARKER = 'LIFEBOAT-PLAINTEXT-MARKER-7f3a9c';

const ok = expectOk;

/**
 * One encrypted repository through the CLI: init --encrypt, forever-forward and
 * forward jobs, restores bit-exact, verify, wrong and missing passwords,
 * no plaintext in any repository file, repo passwd and the recovery key, key
 * export, a tampered block, NBD and NFS reads of an instant-recovery session, and
 * file-level recovery through the server and through files mount.
 */
test('encryption at rest: an encrypted repository end to end', { timeout: 10 * 60_000 }, async (t) => {
  const { dir, cleanup } = await tempDir();
  t.after(cleanup);
  const rand = rng(18);
  const repo = join(dir, 'repo');
  const disk = join(dir, 'vm.img');
  const pw = join(dir, 'pw');
  const pw2 = join(dir, 'pw2');
  const wrong = join(dir, 'wrong');
  await writeFile(pw, 'correct horse battery staple\n');
  await writeFile(pw2, 'a new password');
  await writeFile(wrong, 'not the password');
  const env = { LIFEBOAT_PASSWORD_FILE: pw };

  // A disk with random data, a long run of a marker, and zeros.
  const v1 = Buffer.alloc(SIZE);
  randomBytes(rand, 20 * BS).copy(v1, 3 * BS);
  for (let at = 30 * BS; at < 34 * BS; at += MARKER.length) v1.write(MARKER, at, 'latin1');
  await writeFile(disk, v1);

  const init = JSON.parse(ok(await cli(['repo', 'init', repo, '--block-size', '256K', '--encrypt', '--recovery-key', '--json'], env), 'init').stdout) as {
    encrypted: boolean;
    recoveryKey: string;
    keyId: string;
  };
  assert.equal(init.encrypted, true);
  assert.match(init.recoveryKey, /^([0-9a-f]{8}-){7}[0-9a-f]{8}$/);
  await writeFile(join(dir, 'rk'), init.recoveryKey + '\n');

  // Without a password, nothing is done; with a wrong one neither.
  const none = await cli(['job', 'create', 'ff', '--repo', repo, '--disk', disk, '--method', 'forever', '--retain-points', '2']);
  assert.equal(none.code, 2, none.stderr);
  assert.match(none.stderr, /LFB_ERR_PASSWORD_REQUIRED/);
  const bad = await cli(['job', 'create', 'ff', '--repo', repo, '--disk', disk, '--method', 'forever', '--retain-points', '2', '--password-file', wrong]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /LFB_ERR_WRONG_PASSWORD/);
  assert.deepEqual(await readdir(join(repo, 'jobs')), [], 'no job was made');

  ok(await cli(['job', 'create', 'ff', '--repo', repo, '--disk', disk, '--method', 'forever', '--retain-points', '2'], env), 'job ff');
  ok(await cli(['job', 'create', 'fw', '--repo', repo, '--disk', disk, '--method', 'forward', '--active-full', 'sun', '--retain-points', '3'], env), 'job fw');

  // Full, then increments (forever forward merges the oldest into the full once it keeps 2).
  const states: Buffer[] = [];
  for (let i = 0; i < 4; i++) {
    if (i > 0) {
      await writeAt(disk, randomBytes(rand, BS + 77), Math.floor(rand() * 35) * BS);
      for (let at = 36 * BS; at < 37 * BS; at += MARKER.length) await writeAt(disk, Buffer.from(MARKER), at);
    }
    states.push(await readFile(disk));
    ok(await cli(['backup', 'ff', '--repo', repo], env), `backup ff ${i}`);
    ok(await cli(['backup', 'fw', '--repo', repo, '--password-file', pw]), `backup fw ${i}`);
  }
  const badRun = await cli(['backup', 'ff', '--repo', repo, '--password-file', wrong]);
  assert.match(badRun.stderr, /LFB_ERR_WRONG_PASSWORD/);

  const pointsOf = async (job: string): Promise<string[]> =>
    (JSON.parse(ok(await cli(['points', job, '--repo', repo, '--json'], env), 'points').stdout) as { id: string }[]).map((p) => p.id);
  const ff = await pointsOf('ff');
  const fw = await pointsOf('fw');
  assert.equal(ff.length, 2, 'forever forward keeps 2 (merged)');
  assert.equal(fw.length, 4);
  const restored = async (job: string, point: string, to: string): Promise<Buffer> => {
    ok(await cli(['restore', job, '--repo', repo, '--point', point, '--to', to, '--format', 'raw'], env), `restore ${job} ${point}`);
    return readFile(to);
  };
  assert.ok((await restored('ff', ff[1]!, join(dir, 'r-ff-latest'))).equals(states[3]!), 'ff latest bit-exact');
  assert.ok((await restored('ff', ff[0]!, join(dir, 'r-ff-old'))).equals(states[2]!), 'ff merged full bit-exact');
  for (let i = 0; i < 4; i++) assert.ok((await restored('fw', fw[i]!, join(dir, `r-fw-${i}`))).equals(states[i]!), `fw point ${i} bit-exact`);
  ok(await cli(['verify', 'ff', '--repo', repo, '--all'], env), 'verify ff');
  ok(await cli(['verify', 'fw', '--repo', repo, '--all'], env), 'verify fw');

  // No plaintext in any repository file: not the marker, not a chunk of the random data, not a plain SHA-256 of a block.
  const needles = [Buffer.from(MARKER), v1.subarray(5 * BS, 5 * BS + 64)];
  for (let b = 3; b < 23; b++)
    needles.push(
      createHash('sha256')
        .update(v1.subarray(b * BS, (b + 1) * BS))
        .digest(),
    );
  const files = await filesUnder(repo);
  assert.ok(files.some((f) => f.endsWith('.vbk')) && files.some((f) => f.endsWith('.vib')));
  for (const f of files) {
    const bytes = await readFile(f);
    for (const n of needles) assert.equal(bytes.indexOf(n), -1, `${f} holds plaintext (${n.length} bytes)`);
  }
  // The VM configuration is in the sealed root too: no disk path in any backup file.
  for (const f of files.filter((x) => /\.(vbk|vib)$/.test(x))) assert.equal((await readFile(f)).indexOf(Buffer.from(disk)), -1, `${f} names the disk`);

  // Key export prints the wrapped key, never the data key.
  const exported = JSON.parse(ok(await cli(['repo', 'key', 'export', '--repo', repo, '--json']), 'export').stdout) as {
    key: { keyId: string; password: string };
  };
  assert.equal(exported.key.keyId, init.keyId);

  // repo passwd: the old password stops working, the new one works; the recovery key sets another.
  ok(await cli(['repo', 'passwd', '--repo', repo, '--new-password-file', pw2], env), 'passwd');
  const old = await cli(['points', 'ff', '--repo', repo], env);
  assert.match(old.stderr, /LFB_ERR_WRONG_PASSWORD/);
  ok(await cli(['points', 'ff', '--repo', repo, '--password-file', pw2]), 'new password');
  ok(await cli(['repo', 'passwd', '--repo', repo, '--recovery-key-file', join(dir, 'rk'), '--new-password-file', pw]), 'passwd by recovery key');
  ok(await cli(['points', 'ff', '--repo', repo], env), 'password set by the recovery key');

  // A guest file system in the encrypted repository, for file-level recovery through the server below.
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'etc'), { recursive: true });
  const secret = Buffer.concat([Buffer.from(`${MARKER}\n`), randomBytes(rand, 70_000)]);
  await writeFile(join(tree, 'etc', 'secret.bin'), secret);
  const fsDisk = join(dir, 'fs.img');
  await run('truncate', ['-s', '16M', fsDisk]);
  await run('mkfs.ext4', ['-q', '-F', '-d', tree, fsDisk]);
  ok(await cli(['job', 'create', 'fs', '--repo', repo, '--disk', fsDisk], env), 'job fs');
  ok(await cli(['backup', 'fs', '--repo', repo], env), 'backup fs');

  // Instant recovery over NBD and file-level recovery need the password in the server.
  let server: Server | undefined;
  try {
    server = await startServer(repo, ['--no-portmap', '--no-scheduler', '--password-file', pw]);
    // files ls|get hand themselves to the server, whose appliance reads the point through an export of its own.
    const ls = ok(await cli(['files', 'ls', 'fs', '--repo', repo, '--point', 'latest', '/etc', '--json'], env), 'files ls of an encrypted point');
    assert.match(ls.stderr, /a server runs for the repository/);
    assert.deepEqual(
      (JSON.parse(ls.stdout) as { entries: { name: string; size: number }[] }).entries.map((e) => [e.name, e.size]),
      [['secret.bin', secret.length]],
    );
    const got1 = join(dir, 'secret.out');
    ok(await cli(['files', 'get', 'fs', '/etc/secret.bin', '--repo', repo, '--point', 'latest', '--to', got1], env), 'files get of an encrypted point');
    assert.ok((await readFile(got1)).equals(secret), 'the file from the encrypted point is the guest file');
    ok(await cli(['instant', 'start', 'fw', '--repo', repo, '--point', 'latest', '--name', 's'], env), 'instant start');
    const out = join(dir, 'nbd.raw');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `nbd://127.0.0.1:${server.nbdPort}/s/disk0`, out]);
    const got = await readFile(out);
    const want = states[3]!;
    let diff = -1;
    for (let i = 0; i < want.length && diff < 0; i++) if (got[i] !== want[i]) diff = i;
    assert.equal(diff, -1, `NBD read of an encrypted point differs at ${diff} (of ${got.length}, wanted ${want.length})`);
    assert.ok(
      got.subarray(want.length).every((x) => x === 0),
      'past the disk: zeros (the export is rounded to sectors)',
    );
    // The same session over NFS (ports given, no portmapper): the flat disk is the point's bytes.
    const nfs = `nfs://127.0.0.1/lifeboat/s/disk0-flat.vmdk?version=3&nfsport=${server.nfsPort}&mountport=${server.mountPort}`;
    const viaNfs = (await run('nfs-cat', [nfs], { encoding: 'buffer', maxBuffer: 64 << 20 })).stdout;
    assert.equal(viaNfs.length, want.length, 'the NFS file is the disk');
    assert.ok(viaNfs.equals(want), 'NFS read of an encrypted point is the disk at that point');
    // Every block was decoded for those reads, and none of them went to the disk cache: it would hold them in the clear.
    const list = ok(await cli(['instant', 'list', '--repo', repo], env), 'instant list');
    assert.match(list.stdout, /disk cache: off \(the repository is encrypted/);
    assert.ok(!existsSync(join(repo, 'cache', 'blocks')), 'no disk cache folder in an encrypted repository');
    ok(await cli(['instant', 'stop', 's', '--repo', repo], env), 'instant stop');
  } finally {
    // SIGTERM: serve closes its file session (the appliance files ls booted) as it stops; a kill -9 would leave it running.
    if (server && server.proc.exitCode === null) {
      server.proc.kill('SIGTERM');
      const t = setTimeout(() => server?.proc.kill('SIGKILL'), 60_000);
      await server.exited;
      clearTimeout(t);
    }
  }

  // files mount runs in a keeper process of its own: the password given to the command (here --password-file,
  // no LIFEBOAT_PASSWORD_FILE) unlocks the repository there too; without one, nothing is started.
  const mnt = join(dir, 'mnt');
  const locked = await cli(['files', 'mount', 'fs', mnt, '--repo', repo, '--point', 'latest']);
  assert.equal(locked.code, 2, locked.stderr);
  assert.match(locked.stderr, /LFB_ERR_PASSWORD_REQUIRED/);
  const badMount = await cli(['files', 'mount', 'fs', mnt, '--repo', repo, '--point', 'latest', '--password-file', wrong]);
  assert.match(badMount.stderr, /LFB_ERR_WRONG_PASSWORD/);
  const mounted = await cli(['files', 'mount', 'fs', mnt, '--repo', repo, '--point', 'latest', '--password-file', pw, '--json']);
  try {
    assert.equal(mounted.code, 0, mounted.stderr);
    const fsId = (JSON.parse(mounted.stdout) as { volumes: { id: string }[] }).volumes[0]!.id;
    assert.ok((await readFile(join(mnt, fsId, 'etc', 'secret.bin'))).equals(secret), 'the file under the mount is the guest file');
  } finally {
    if (mounted.code === 0) ok(await cli(['files', 'umount', mnt]), 'files umount');
  }

  // A tampered ciphertext byte: verify reports the block damaged, restore fails and never writes wrong data.
  const vbk = files.find((f) => f.includes('/fw/') && f.endsWith('.vbk'))!;
  const saved = join(dir, 'saved.vbk');
  await copyFile(vbk, saved);
  process.env['LIFEBOAT_PASSWORD_FILE'] = pw;
  const unlocked = await Repository.open(repo, {});
  delete process.env['LIFEBOAT_PASSWORD_FILE'];
  assert.ok(unlocked.keys !== undefined);
  const reader = await BackupFileReader.open(vbk);
  const table = reader.root.tables[0]!;
  let slot = 0;
  while (table.isZero(slot)) slot++;
  const at = table.offset(slot) + Math.floor(table.storedLength(slot) / 2);
  const block = table.blockIndex(slot);
  await reader.close();
  const fh = await open(vbk, 'r+');
  const one = Buffer.alloc(1);
  await fh.read(one, 0, 1, at);
  one[0] = one[0]! ^ 0x01;
  await fh.write(one, 0, 1, at);
  await fh.close();
  const v = await cli(['verify', 'fw', '--repo', repo, '--point', fw[0]!, '--json'], env);
  assert.equal(v.code, 4, v.stderr);
  assert.match(v.stdout + v.stderr, new RegExp(`"block":${block}\\b|block ${block}\\b`));
  assert.match(v.stdout + v.stderr, /authentication tag/);
  const to = join(dir, 'r-tampered');
  const r = await cli(['restore', 'fw', '--repo', repo, '--point', fw[0]!, '--to', to, '--format', 'raw'], env);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /LFB_ERR_BLOCK_CORRUPT|unavailable|damaged/);
  // Nothing is left under the disk's name: a failed restore never passes off a disk with a wrong block.
  assert.equal(
    await readFile(to).then(
      () => 'left',
      () => 'absent',
    ),
    'absent',
  );
  await copyFile(saved, vbk);
});
