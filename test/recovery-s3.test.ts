// Recovery from a repository on S3 (Ceph's radosgw, one cluster for this file).
// Instant recovery: `serve --repo s3://…` publishes a point; the tiny VM boots from it under TCG; nbdcopy and nfs-cat
// read it bit-exact; a backup asked for meanwhile is handed to the server; a write lands in the session's overlay on
// this host; the session's hold is an object where the job's files are; a server killed with -9 and started again
// finds the session and its write; the point restores bit-exact after. File-level recovery: `files ls` and `files get` through the server, bit-exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openLocation } from '../src/repository/location.js';
import { useCephS3, useClusterEnv } from './ceph-fixture.js';
import { cli, randomBytes, rng, tempDir, until as untilHelper, type CliResult } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);
const MAKE_IMAGE = fileURLToPath(new URL('../../test/fixtures/make-boot-image.sh', import.meta.url));
const ceph = useCephS3();
// KVM aborts on some CI hosts: the appliance runs under TCG unless the environment says otherwise.
process.env['LIBGUESTFS_BACKEND'] ??= 'direct';
process.env['LIBGUESTFS_BACKEND_SETTINGS'] ??= 'force_tcg';

/** The VM boots under TCG: waits are long, polls every 200 ms. */
const until = <T>(what: string, f: () => Promise<T | undefined>, ms = 180_000): Promise<T> => untilHelper(what, f, ms, 200);

async function ok(args: string[]): Promise<CliResult> {
  const r = await cli(args);
  assert.equal(r.code, 0, `lifeboat ${args.join(' ')}: ${r.stderr}`);
  return r;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Session {
  name: string;
  dir: string;
  disks: { nfsPath: string; nbdExport: string }[];
  vm?: { state: string; serialLog: string };
}

async function sessions(repo: string): Promise<Session[]> {
  return JSON.parse((await ok(['instant', 'list', '--repo', repo, '--json'])).stdout) as Session[];
}

/** A temporary folder with the bucket's settings in the environment; the server a test keeps in `s.server` is killed whatever happens. */
async function inScene(fn: (dir: string, s: { server?: Server | undefined }) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir();
  useClusterEnv(ceph(), dir);
  const s: { server?: Server | undefined } = {};
  try {
    await fn(dir, s);
  } finally {
    if (s.server) await kill9(s.server);
    await cleanup();
  }
}

/** The job's holds: the names in jobs/vm/holds, listed through the repository's own storage (the bucket). */
async function holds(repo: string): Promise<string[]> {
  const { root, storage } = await openLocation(repo);
  return storage.list(join(root, 'jobs', 'vm', 'holds'));
}

test('serve on an S3 repository: a VM boots from a point, NBD and NFS read it bit-exact, writes and holds survive a kill -9', { timeout: 10 * 60_000 }, () =>
  inScene(async (dir, s) => {
    const image = join(dir, 'boot.img');
    const sum = (await run('bash', [MAKE_IMAGE, image, join(dir, 'build')], { maxBuffer: 1 << 24 })).stdout.trim().split('\n').pop()!;
    const imageSum = sha256(await readFile(image));
    const repo = `s3://${ceph().bucket('instant')}/repo`;
    await ok(['repo', 'init', repo, '--block-size', '256K']);
    await ok(['job', 'create', 'vm', '--repo', repo, '--disk', image]);
    await ok(['backup', 'vm', '--repo', repo]);

    const state = ['--state-dir', join(dir, 'state'), '--no-portmap']; // port 111 belongs to the tests that hold withPort111
    s.server = await startServer(repo, state);
    const booted = await ok(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'booted', '--boot', '--accel', 'tcg']);
    assert.match(booted.stdout, /writes go to .*\/host\/object-stores\/[0-9a-f]{16}\/cache\/instant\/booted/);
    const vm = (await sessions(repo)).find((s) => s.name === 'booted')!.vm!;
    const serial = await until('the boot marker', () => readFile(vm.serialLog, 'utf8').then((t) => (/DISK-(OK|BAD|NONE)/.test(t) ? t : undefined)));
    assert.match(serial, new RegExp(`DISK-OK ${sum}`));

    // A backup asked for while the server runs is the server's run (its catalog, its task cap), not the command's.
    const handed = await ok(['backup', 'vm', '--repo', repo]);
    assert.match(handed.stdout, /, run \d+ of the server$/m);
    const plain = await ok(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'plain']);
    assert.match(plain.stdout, /nfsport=\d+&mountport=\d+/);
    const nbdUrl = `nbd://127.0.0.1:${s.server.nbdPort}/plain/disk0`;
    await run('nbdcopy', [nbdUrl, join(dir, 'nbd.img')]);
    assert.equal(sha256(await readFile(join(dir, 'nbd.img'))), imageSum, 'NBD read of the S3 point');
    const nfs = await run('nfs-cat', [`nfs://127.0.0.1/lifeboat/plain/disk0-flat.vmdk?nfsport=${s.server.nfsPort}&mountport=${s.server.mountPort}`], {
      encoding: 'buffer',
      maxBuffer: 1 << 26,
    });
    assert.equal(sha256(nfs.stdout), imageSum, 'NFS read of the S3 point');
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 64k', nbdUrl]);
    // Named with this host's tag: another host's server sweeps only its own.
    assert.deepEqual((await holds(repo)).map((h) => h.replace(/^session-[0-9a-f]{8}-/, 'session-')).sort(), ['session-booted.json', 'session-plain.json']);

    // A server killed with -9: the next finds both sessions on this host, and the acknowledged write.
    await kill9(s.server);
    s.server = await startServer(repo, state);
    assert.deepEqual((await sessions(repo)).map((s) => s.name).sort(), ['booted', 'plain']);
    const back = await run('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0x5a 1M 64k', `nbd://127.0.0.1:${s.server.nbdPort}/plain/disk0`]);
    assert.doesNotMatch(back.stdout, /Pattern verification failed/);
    for (const name of ['booted', 'plain']) await ok(['instant', 'stop', name, '--repo', repo]);
    assert.deepEqual(await holds(repo), []);

    // The point is as it was backed up: restored from the bucket, bit-exact, and whole by verify.
    await ok(['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', join(dir, 'restored.img')]);
    assert.equal(sha256(await readFile(join(dir, 'restored.img'))), imageSum);
    await ok(['verify', 'vm', '--repo', repo, '--all']);
  }),
);

test(
  'file-level recovery from an S3 point: files ls and get through the server, bit-exact; the browse holds its point in the bucket until it closes',
  { timeout: 10 * 60_000 },
  () =>
    inScene(async (dir, s) => {
      const tree = join(dir, 'tree');
      await mkdir(join(tree, 'etc'), { recursive: true });
      await writeFile(join(tree, 'etc', 'motd'), 'restored from a bucket\n');
      const big = randomBytes(rng(20), 3 * 1024 * 1024 + 123);
      await writeFile(join(tree, 'big.bin'), big);
      const image = join(dir, 'fs.img');
      execFileSync('mkfs.ext4', ['-q', '-F', '-d', tree, image, '32M']);
      const repo = `s3://${ceph().bucket('files')}/repo`;
      await ok(['repo', 'init', repo]);
      await ok(['job', 'create', 'vm', '--repo', repo, '--disk', image]);
      await ok(['backup', 'vm', '--repo', repo]);
      s.server = await startServer(repo, ['--state-dir', join(dir, 'state'), '--no-portmap']);

      const listed = await ok(['files', 'ls', 'vm', '--repo', repo, '--point', 'latest', '/', '--json']);
      const names = (JSON.parse(listed.stdout) as { entries: { name: string }[] }).entries.map((e) => e.name);
      assert.ok(names.includes('big.bin') && names.includes('etc'), listed.stdout);
      assert.ok(
        (await holds(repo)).some((h) => h.startsWith('files-')),
        "the server's browse holds the point",
      );
      await ok(['files', 'get', 'vm', '--repo', repo, '--point', 'latest', '/big.bin', '--to', join(dir, 'big.out')]);
      assert.equal(sha256(await readFile(join(dir, 'big.out'))), sha256(big));
      await ok(['files', 'get', 'vm', '--repo', repo, '--point', 'latest', '/etc/motd', '--to', join(dir, 'motd.out')]);
      assert.equal(await readFile(join(dir, 'motd.out'), 'utf8'), 'restored from a bucket\n');

      // A server that stops closes its browse, and the hold goes with it.
      s.server.proc.kill('SIGTERM');
      await s.server.exited;
      s.server = undefined;
      assert.deepEqual(await holds(repo), []);
    }),
);
