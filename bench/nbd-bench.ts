/**
 * Instant-recovery NBD benchmark: Lifeboat's NBD exports (reading a
 * compressed restore point through the session overlay) against
 * `nbdkit file` serving the same disk as a plain raw file. Same machine,
 * same clients, one run. Also compares booting the tiny test VM from a
 * session over NBD with booting it from the local raw file.
 *
 *   npm run bench:nbd
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { MiB, best, lifeboat, seconds, waitFor, work, bin } from './bench-util.js';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSampleImage } from './sample-image.js';

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** fio 4 KiB random reads through its NBD engine, 32 in flight: IOPS. */
function fioIops(uri: string, size: number): number {
  const r = spawnSync(
    'fio',
    [
      '--name=rr',
      '--ioengine=nbd',
      `--uri=${uri}`,
      '--rw=randread',
      '--bs=4k',
      '--iodepth=32',
      `--size=${size}`,
      '--time_based',
      '--runtime=8',
      '--output-format=json',
    ],
    { encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  if (r.status !== 0) throw new Error(`fio: ${r.stderr}`);
  // fio's nbd engine prints "connected to NBD server" before the JSON.
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { read: { iops: number } }[] };
  return j.jobs[0]!.read.iops;
}

/** Seconds from QEMU's start to the guest's DISK-OK line (TCG, the same arguments but the drive). */
async function bootSeconds(drive: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const q = spawn(
    'qemu-system-x86_64',
    ['-accel', 'tcg', '-m', '256', '-smp', '1', '-nic', 'none', '-nographic', '-serial', 'stdio', '-monitor', 'none', '-no-reboot', '-drive', drive],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let out = '';
  q.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const closed = new Promise((r) => q.on('close', r));
  await waitFor(() => out.includes('DISK-') || q.exitCode !== null, 'the guest');
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  q.kill('SIGKILL');
  await closed;
  if (!out.includes('DISK-OK')) throw new Error(`guest did not verify its disk: ${out.slice(-400)}`);
  return secs;
}

async function main(): Promise<void> {
  mkdirSync(work, { recursive: true });
  let image = join(work, 'vm.img');
  if (!existsSync(image)) {
    image = join(work, 'nbd.img');
    if (!existsSync(image)) buildSampleImage(image, 1024 * MiB, 700 * MiB);
  }
  const size = statSync(image).size;
  const repo = join(work, 'nbd-repo');
  rmSync(repo, { recursive: true, force: true });
  lifeboat(['repo', 'init', repo]);
  lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', image]);
  lifeboat(['backup', 'vm', '--repo', repo]);
  // The same disk in a repository of 256 KiB blocks: a random 4 KiB read decodes a quarter as much.
  const repo256 = join(work, 'nbd-repo-256k');
  rmSync(repo256, { recursive: true, force: true });
  lifeboat(['repo', 'init', repo256, '--block-size', '256K']);
  lifeboat(['job', 'create', 'vm', '--repo', repo256, '--disk', image]);
  lifeboat(['backup', 'vm', '--repo', repo256]);
  // The boot image of the tests.
  const bootImg = join(work, 'boot.img');
  if (!existsSync(bootImg)) execFileSync('bash', ['test/fixtures/make-boot-image.sh', bootImg, join(work, 'boot-build')], { stdio: 'ignore' });
  writeFileSync(join(work, 'boot-vm.json'), JSON.stringify({ memoryMiB: 256, vcpus: 1 }));
  lifeboat(['job', 'create', 'boot', '--repo', repo, '--disk', bootImg, '--vm-config', join(work, 'boot-vm.json')]);
  lifeboat(['backup', 'boot', '--repo', repo]);

  const procs: ChildProcess[] = [];
  const results: Record<string, Record<string, number>> = { nbdkit: {}, lifeboat: {} };
  try {
    const nbdkit = spawn('nbdkit', ['-f', '-r', '-i', '127.0.0.1', '-p', '10810', 'file', image], { stdio: 'ignore' });
    procs.push(nbdkit);
    await waitFor(() => spawnSync('nbdinfo', ['--size', 'nbd://127.0.0.1:10810']).status === 0, 'nbdkit');
    const server = spawn(
      process.execPath,
      [bin, 'serve', '--repo', repo, '--bind', '127.0.0.1', '--nfs-port', '12049', '--mount-port', '11058', '--no-portmap', '--nbd-port', '10811'],
      { stdio: 'ignore' },
    );
    procs.push(server);
    await waitFor(() => existsSync(join(repo, 'instant', 'control.json')), 'lifeboat serve');
    lifeboat(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'bench']);
    const server256 = spawn(
      process.execPath,
      [bin, 'serve', '--repo', repo256, '--bind', '127.0.0.1', '--nfs-port', '12050', '--mount-port', '11059', '--no-portmap', '--nbd-port', '10812'],
      { stdio: 'ignore' },
    );
    procs.push(server256);
    await waitFor(() => existsSync(join(repo256, 'instant', 'control.json')), 'lifeboat serve (256 KiB blocks)');
    lifeboat(['instant', 'start', 'vm', '--repo', repo256, '--point', 'latest', '--name', 'bench']);
    lifeboat(['instant', 'start', 'boot', '--repo', repo, '--point', 'latest', '--name', 'bootbench']);
    const measure = (who: 'nbdkit' | 'lifeboat', uri: string): void => {
      results[who]!['nbdcopy MB/s'] = size / 1e6 / best(() => seconds('nbdcopy', [uri, 'null:']));
      results[who]!['qemu-img convert MB/s'] =
        size / 1e6 / best(() => seconds('qemu-img', ['convert', '-n', '-f', 'raw', uri, '--target-image-opts', `driver=null-co,size=${size}`]));
      results[who]!['fio randread 4K IOPS'] = fioIops(uri, size);
    };
    measure('nbdkit', 'nbd://127.0.0.1:10810');
    measure('lifeboat', 'nbd://127.0.0.1:10811/bench/disk0');
    results['lifeboat']!['fio randread 4K IOPS, 256 KiB blocks'] = fioIops('nbd://127.0.0.1:10812/bench/disk0', size);
    const local: number[] = [];
    const fromSession: number[] = [];
    for (let i = 0; i < 3; i++) {
      local.push(await bootSeconds(`file=${bootImg},format=raw,if=virtio,readonly=on`));
      fromSession.push(await bootSeconds('file=nbd://127.0.0.1:10811/bootbench/disk0,format=raw,if=virtio'));
    }
    results['nbdkit']!['boot s (local raw file)'] = median(local);
    results['lifeboat']!['boot s (from session over NBD)'] = median(fromSession);
  } finally {
    for (const p of procs) p.kill('SIGKILL');
  }
  console.log(`\n${(size / MiB).toFixed(0)} MiB disk: nbdkit serves the raw file; Lifeboat serves the compressed restore point (zstd:1)`);
  console.log('measure                      nbdkit     lifeboat   lifeboat/nbdkit');
  for (const k of ['nbdcopy MB/s', 'qemu-img convert MB/s', 'fio randread 4K IOPS']) {
    const g = results['nbdkit']![k]!;
    const l = results['lifeboat']![k]!;
    console.log(`${k.padEnd(27)}${g.toFixed(0).padStart(9)}  ${l.toFixed(0).padStart(11)}  ${(l / g).toFixed(2).padStart(16)}`);
  }
  const r256 = results['lifeboat']!['fio randread 4K IOPS, 256 KiB blocks']!;
  console.log(
    `${'  same, 256 KiB blocks'.padEnd(27)}${''.padStart(9)}  ${r256.toFixed(0).padStart(11)}  ${(r256 / results['nbdkit']!['fio randread 4K IOPS']!).toFixed(2).padStart(16)}`,
  );
  const bl = results['nbdkit']!['boot s (local raw file)']!;
  const bs = results['lifeboat']!['boot s (from session over NBD)']!;
  console.log(`boot to DISK-OK (TCG, median of 3): local file ${bl.toFixed(2)} s, session over NBD ${bs.toFixed(2)} s, ratio ${(bs / bl).toFixed(2)}`);
  writeFileSync(join(work, 'nbd-results.json'), JSON.stringify(results, null, 2));
}

await main();
