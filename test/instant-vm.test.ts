import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { QmpClient } from '../src/qemu/qmp.js';
import { bootListPath, decodeBootList } from '../src/recovery/boot-prefetch.js';
import { cli, rng, randomBytes, tempDir, until as untilHelper, writeAt } from './helpers.js';
import { kill9, startServer, type Server } from './server-helpers.js';

const run = promisify(execFile);
const MAKE_IMAGE = fileURLToPath(new URL('../../test/fixtures/make-boot-image.sh', import.meta.url));

interface Info {
  name: string;
  dir: string;
  disks: { name: string; nbdExport: string; size: number }[];
  vm?: { state: string; pid: number; accel: string; accelNote?: string; serialLog: string; qmpSocket: string };
  migration?: { state: string; mode: string; disks: { copied: number; size: number; target: string }[]; problem?: string };
}

async function sessions(repo: string): Promise<Info[]> {
  const r = await cli(['instant', 'list', '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Info[];
}

/** The VM boots under TCG: waits are long, polls every 200 ms. */
const until = <T>(what: string, f: () => Promise<T | undefined>, ms = 180_000): Promise<T> => untilHelper(what, f, ms, 200);

const serialSays = (path: string, re: RegExp): Promise<string | undefined> =>
  readFile(path, 'utf8').then(
    (t) => (re.test(t) ? t : undefined),
    () => undefined,
  );

async function sha256Of(paths: string[]): Promise<string[]> {
  return Promise.all(
    paths.map(async (p) =>
      createHash('sha256')
        .update(await readFile(p))
        .digest('hex'),
    ),
  );
}

async function backupFiles(repo: string, job: string): Promise<string[]> {
  const d = join(repo, 'jobs', job);
  return (await readdir(d)).filter((n) => /\.(vbk|vib)$/.test(n)).map((n) => join(d, n));
}

/** The tiny bootable disk of the boot test, and an 8 MiB data disk; backed up as one VM. */
async function bootableRepo(dir: string, disks: 'one' | 'two'): Promise<{ repo: string; image: string; sum: string }> {
  const image = join(dir, 'boot.img');
  const sum = (await run('bash', [MAKE_IMAGE, image, join(dir, 'build')], { maxBuffer: 1 << 24 })).stdout.trim().split('\n').pop()!;
  const data = join(dir, 'data.img');
  await writeFile(data, '');
  await truncate(data, 8 * 1024 * 1024);
  const repo = join(dir, 'repo');
  await writeFile(join(dir, 'vm.json'), JSON.stringify({ memoryMiB: 256, vcpus: 1 }));
  assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
  const r = await cli([
    'job',
    'create',
    'vm',
    '--repo',
    repo,
    '--disk',
    image,
    ...(disks === 'two' ? ['--disk', data] : []),
    '--vm-config',
    join(dir, 'vm.json'),
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await cli(['backup', 'vm', '--repo', repo])).code, 0);
  return { repo, image, sum };
}

test(
  'instant start --boot: QEMU boots the point from the NBD exports, its serial console logged; the session shows when it stops',
  { timeout: 10 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    let server: Server | undefined;
    try {
      const { repo, sum } = await bootableRepo(dir, 'one');
      const before = await sha256Of(await backupFiles(repo, 'vm'));
      server = await startServer(repo, ['--no-portmap']); // port 111 belongs to the tests that hold withPort111
      const s = await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'booted', '--boot', '--accel', 'tcg']);
      assert.equal(s.code, 0, s.stderr);
      assert.match(s.stdout, /booted: QEMU pid \d+, tcg, network none/);
      assert.match(s.stdout, /; screen \(VNC\) \S+\/vm-vnc\.sock$/m);
      const info = (await sessions(repo))[0]!;
      assert.equal(info.vm?.accel, 'tcg');
      const serial = await until('the boot marker', () => serialSays(info.vm!.serialLog, /DISK-(OK|BAD|NONE)/));
      assert.match(serial, /BOOT-OK kernel=/);
      assert.match(serial, new RegExp(`DISK-OK ${sum}`));
      // The guest powers itself off: the supervisor notices.
      const stopped = await until('the VM to be seen stopped', async () => ((await sessions(repo))[0]!.vm?.state === 'exited' ? true : undefined), 60_000);
      assert.ok(stopped);
      assert.equal((await cli(['instant', 'stop', 'booted', '--repo', repo])).code, 0);
      // The first boot's reads were noted for the job; a second boot finds its blocks decoded (prefetched, or kept on local storage).
      const learnt = decodeBootList(await readFile(bootListPath(repo, 'vm', 0)));
      assert.ok(Array.isArray(learnt) && learnt.length > 0, `boot list: ${String(learnt)}`);
      const again = await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'again', '--boot', '--accel', 'tcg']);
      assert.equal(again.code, 0, again.stderr);
      const second = (await sessions(repo)).find((x) => x.name === 'again')!;
      assert.match(await until('the second boot marker', () => serialSays(second.vm!.serialLog, /DISK-(OK|BAD|NONE)/)), new RegExp(`DISK-OK ${sum}`));
      const listed = (await cli(['instant', 'list', '--repo', repo])).stdout;
      const hits = /^disk cache: .+, (\d+) hits, (\d+) misses/m.exec(listed);
      assert.ok(hits && Number(hits[1]) > 0, listed);
      await until(
        'the second VM to be seen stopped',
        async () => ((await sessions(repo)).find((x) => x.name === 'again')!.vm?.state === 'exited' ? true : undefined),
        60_000,
      );
      assert.equal((await cli(['instant', 'stop', 'again', '--repo', repo])).code, 0);
      assert.deepEqual(await sha256Of(await backupFiles(repo, 'vm')), before);
    } finally {
      if (server) await kill9(server);
      await cleanup();
    }
  },
);

test('--accel kvm runs the guest under KVM, or falls back to TCG and says why', { timeout: 10 * 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let server: Server | undefined;
  try {
    const { repo, sum } = await bootableRepo(dir, 'one');
    server = await startServer(repo, ['--no-portmap']); // port 111 belongs to the tests that hold withPort111
    const s = await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'k', '--boot', '--accel', 'kvm']);
    assert.equal(s.code, 0, s.stderr);
    const info = (await sessions(repo))[0]!;
    await until('the guest to check its disk', () => serialSays(info.vm!.serialLog, new RegExp(`DISK-OK ${sum}`)));
    const vm = (await sessions(repo))[0]!.vm!;
    if (vm.accel === 'tcg') assert.match(vm.accelNote ?? '', /asked for kvm/);
    else assert.equal(vm.accel, 'kvm');
    assert.equal((await cli(['instant', 'stop', 'k', '--repo', repo])).code, 0);
  } finally {
    if (server) await kill9(server);
    await cleanup();
  }
});

test('instant migrate moves a running VM to production storage with QEMU mirror; it keeps running and boots from there', { timeout: 10 * 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let server: Server | undefined;
  let pid = 0;
  try {
    const { repo, image, sum } = await bootableRepo(dir, 'two');
    const before = await sha256Of(await backupFiles(repo, 'vm'));
    server = await startServer(repo, ['--no-portmap']); // port 111 belongs to the tests that hold withPort111
    assert.equal((await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'mv', '--boot', '--accel', 'tcg'])).code, 0);
    const info = (await sessions(repo))[0]!;
    pid = info.vm!.pid;
    await until('the guest to stay up', () => serialSays(info.vm!.serialLog, /STAYING/));
    // add-disk hot-plugs into a free PCIe root port of the q35 VM: the guest sees the disk and writes to it.
    const added = await cli(['instant', 'add-disk', 'mv', '--repo', repo, '--size', '4M', '--name', 'extra']);
    assert.equal(added.code, 0, added.stderr);
    await until('the guest to see the new disk', () => serialSays(info.vm!.serialLog, /HOTPLUG vdc 8192/), 60_000);
    const marked = await run('qemu-io', ['-f', 'raw', '-r', '-c', 'read -v 0 16', `nbd://127.0.0.1:${server.nbdPort}/mv/extra`]);
    assert.match(marked.stdout, /48 4f 54 50 4c 55 47 2d 76 64 63/, 'the guest wrote to the hot-plugged disk through the session');
    // Three more fill the free ports; the next fails and leaves nothing behind, and migration still works.
    for (const n of ['e2', 'e3', 'e4']) assert.equal((await cli(['instant', 'add-disk', 'mv', '--repo', repo, '--size', '1M', '--name', n])).code, 0);
    const full = await cli(['instant', 'add-disk', 'mv', '--repo', repo, '--size', '1M', '--name', 'e5']);
    assert.equal(full.code, 1, full.stderr);
    assert.match(full.stderr, /no free hot-plug slot.*\[LFB_ERR_VM\]/);
    assert.deepEqual(
      (await sessions(repo))[0]!.disks.map((d) => d.name),
      ['disk0', 'disk1', 'extra', 'e2', 'e3', 'e4'],
    );
    assert.ok(!(await readdir(info.dir)).includes('overlay-1004'), 'the failed disk left no overlay');
    assert.ok(!(await readdir(join(info.dir, 'files'))).includes('e5.vmdk'), 'nor a descriptor');
    assert.doesNotMatch((await run('nbdinfo', ['--list', `nbd://127.0.0.1:${server.nbdPort}`])).stdout, /mv\/e5/);
    // Writes through the guest's own disk device (QEMU's qemu-io on the virtio backend), before and after the move.
    const qmp = await QmpClient.connect(info.vm!.qmpSocket);
    const hmp = (cmd: string): Promise<string> => qmp.execute<string>('human-monitor-command', { 'command-line': cmd });
    assert.equal(await hmp('qemu-io -d dev-lfb-disk1/virtio-backend "write -P 0x5a 65536 65536"'), '');
    const prod = join(dir, 'prod');
    const m = await cli(['instant', 'migrate', 'mv', '--repo', repo, '--to', prod, '--format', 'qcow2']);
    assert.equal(m.code, 0, m.stderr);
    assert.match(m.stdout, /done 100%/);
    assert.equal(await hmp('qemu-io -d dev-lfb-disk1/virtio-backend "write -P 0x33 1048576 4096"'), '');
    const blocks = await qmp.execute<{ inserted?: { file?: string } }[]>('query-block');
    assert.ok(
      blocks.some((b) => b.inserted?.file?.includes('vm-disk1.qcow2')),
      'the VM reads its production disk',
    );
    assert.equal((await cli(['instant', 'stop', 'mv', '--repo', repo])).code, 0);
    process.kill(pid, 0); // still running: the session let go of it
    await qmp.execute('quit').catch(() => undefined);
    qmp.close();
    await until('QEMU to exit', async () => (existsSync(`/proc/${pid}`) ? undefined : true), 20_000);
    pid = 0;
    const check = await run('qemu-io', [
      '-f',
      'qcow2',
      '-r',
      '-c',
      'read -P 0x5a 65536 65536',
      '-c',
      'read -P 0x33 1048576 4096',
      '-c',
      'read -P 0 0 65536',
      join(prod, 'vm-disk1.qcow2'),
    ]);
    assert.doesNotMatch(check.stdout, /verification failed/i, check.stdout);
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', image, join(prod, 'vm-disk0.qcow2')]);
    // The production disk boots on its own.
    const q = spawn(
      'qemu-system-x86_64',
      [
        '-accel',
        'tcg',
        '-m',
        '256',
        '-nic',
        'none',
        '-nographic',
        '-serial',
        'stdio',
        '-monitor',
        'none',
        '-no-reboot',
        '-drive',
        `file=${join(prod, 'vm-disk0.qcow2')},format=qcow2,if=virtio`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let serial = '';
    q.stdout.on('data', (d: Buffer) => (serial += d.toString()));
    const exited = new Promise((r) => q.on('close', r));
    await until('the production disk to boot', async () => (serial.includes('DISK-') || q.exitCode !== null ? true : undefined));
    q.kill('SIGKILL');
    await exited;
    assert.match(serial, new RegExp(`DISK-OK ${sum}`));
    assert.deepEqual(await sha256Of(await backupFiles(repo, 'vm')), before);
  } finally {
    if (pid) process.kill(pid, 'SIGKILL');
    if (server) await kill9(server);
    await cleanup();
  }
});

test(
  'copy migration of a session: --disks, add-disk, kill -9 mid-copy, resume, final pass; the target is the session exactly',
  { timeout: 10 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    let server: Server | undefined;
    try {
      const rand = rng(11);
      const d0 = join(dir, 'd0.img');
      const d1 = join(dir, 'd1.img');
      await writeFile(d0, randomBytes(rand, 4 * 1024 * 1024));
      await writeFile(d1, '');
      await truncate(d1, 96 * 1024 * 1024);
      for (let k = 0; k < 96; k++) await writeAt(d1, randomBytes(rand, 256 * 1024), k * 1024 * 1024);
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo])).code, 0);
      assert.equal((await cli(['job', 'create', 'vm', '--repo', repo, '--disk', d0, '--disk', d1])).code, 0);
      assert.equal((await cli(['backup', 'vm', '--repo', repo])).code, 0);
      const before = await sha256Of(await backupFiles(repo, 'vm'));
      server = await startServer(repo, ['--no-portmap']); // port 111 belongs to the tests that hold withPort111
      // Only disk 1 (instant disk recovery), then an extra empty disk.
      assert.equal((await cli(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'cp', '--disks', '1'])).code, 0);
      let info = (await sessions(repo))[0]!;
      assert.deepEqual(
        info.disks.map((d) => d.name),
        ['disk1'],
      );
      const added = await cli(['instant', 'add-disk', 'cp', '--repo', repo, '--size', '4M', '--name', 'scratch']);
      assert.equal(added.code, 0, added.stderr);
      const nbd = (exp: string): string => `nbd://127.0.0.1:${server!.nbdPort}/${exp}`;
      const list = await run('nbdinfo', ['--list', `nbd://127.0.0.1:${server.nbdPort}`]);
      assert.match(list.stdout, /cp\/disk1/);
      assert.match(list.stdout, /cp\/scratch/);
      assert.doesNotMatch(list.stdout, /cp\/disk0/);
      assert.match((await run('nbdinfo', ['--size', nbd('cp/scratch')])).stdout, /^4194304/);
      await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x61 3145728 65536', nbd('cp/disk1')]);
      await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x62 0 4096', nbd('cp/scratch')]);
      const prod = join(dir, 'prod');
      const m = await cli(['instant', 'migrate', 'cp', '--repo', repo, '--to', prod, '--rate', '20', '--no-wait']);
      assert.equal(m.code, 0, m.stderr);
      // Kill the server once the copy is past its first checkpoint but not done.
      const copied = await until(
        'a checkpoint',
        async () => {
          const st = JSON.parse(await readFile(join(info.dir, 'migration.json'), 'utf8').catch(() => '{}')) as Info['migration'];
          const c = st?.disks[0]?.copied ?? 0;
          return c > 0 ? c : undefined;
        },
        60_000,
      );
      await kill9(server);
      server = undefined;
      assert.ok(copied < 96 * 1024 * 1024, 'the kill came before the end of the copy');
      server = await startServer(repo, ['--no-portmap']); // port 111 belongs to the tests that hold withPort111
      await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x63 94371840 8192', nbd('cp/disk1')]);
      info = await until('the resumed copy', async () => {
        const s = (await sessions(repo))[0]!;
        return s.migration?.state === 'synced' ? s : undefined;
      });
      // Written after the first pass: the final pass must carry it.
      await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x64 4096 4096', nbd('cp/disk1')]);
      const fin = await cli(['instant', 'migrate', 'cp', '--repo', repo, '--finish']);
      assert.equal(fin.code, 0, fin.stderr);
      assert.match(fin.stdout, /done 100%/);
      for (const d of ['disk1', 'scratch']) {
        const current = join(dir, `${d}.current`);
        await run('nbdcopy', [nbd(`cp/${d}`), current]);
        await run('cmp', [current, join(prod, `vm-${d}.raw`)]);
      }
      assert.equal((await cli(['instant', 'stop', 'cp', '--repo', repo])).code, 0);
      assert.deepEqual(await sha256Of(await backupFiles(repo, 'vm')), before);
    } finally {
      if (server) await kill9(server);
      await cleanup();
    }
  },
);
