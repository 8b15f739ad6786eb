/**
 * Instant-recovery NBD benchmark: Lifeboat's NBD exports (reading a
 * compressed restore point through the session overlay) against
 * `nbdkit file` serving the same disk as a plain raw file. Same machine,
 * same clients, one run: zstd:1 and lz4 repositories, each cold (a new
 * server, an empty disk cache) and warm (the server restarted with the disk
 * cache the cold reads left). Also compares booting the tiny test VM from a
 * session over NBD (first boot, and the boots after it) with booting it from
 * the local raw file. And Lifeboat's NBD server over the same image held in
 * memory (nbd-memory-server.ts): the part of every gap the protocol, the
 * event loop and the socket make, whatever the device behind them.
 *
 *   npm run bench:nbd
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { MiB, best, coldAndWarm, fromMemory, lifeboat, seconds, startServe, waitFor, work, type ColdAndWarm } from './bench-util.js';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QmpClient } from '../src/qemu/qmp.js';
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

/**
 * One boot of the tiny test VM to its DISK-OK line (TCG, the same arguments
 * but the drive): the seconds from QEMU's start, and the guest's total read
 * wait then, QMP query-blockstats' rd_total_time_ns (what the issue's target
 * is stated in: the time the guest's reads were outstanding, which boot
 * CPU time under TCG does not dilute).
 */
async function bootOnce(drive: string): Promise<{ seconds: number; readWaitMs: number; reads: number }> {
  const qmpPath = join(work, 'boot-qmp.sock');
  rmSync(qmpPath, { force: true });
  const t0 = process.hrtime.bigint();
  const q = spawn(
    'qemu-system-x86_64',
    [
      ...['-accel', 'tcg', '-m', '256', '-smp', '1', '-nic', 'none', '-nographic', '-serial', 'stdio', '-monitor', 'none', '-no-reboot'],
      // The guest powers off right after DISK-OK: paused instead, its monitor still answers.
      ...['-action', 'shutdown=pause'],
      ...['-qmp', `unix:${qmpPath},server=on,wait=off`, '-drive', `${drive},id=disk0`],
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let out = '';
  q.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const closed = new Promise((r) => q.on('close', r));
  try {
    await waitFor(() => out.includes('DISK-') || q.exitCode !== null, 'the guest');
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (!out.includes('DISK-OK')) throw new Error(`guest did not verify its disk: ${out.slice(-400)}`);
    const qmp = await QmpClient.connect(qmpPath);
    try {
      const stats = (await qmp.execute('query-blockstats')) as { device: string; stats: { rd_total_time_ns: number; rd_operations: number } }[];
      const disk = stats.find((s) => s.device === 'disk0');
      if (disk === undefined) throw new Error(`query-blockstats has no disk0: ${JSON.stringify(stats).slice(0, 400)}`);
      return { seconds, readWaitMs: disk.stats.rd_total_time_ns / 1e6, reads: disk.stats.rd_operations };
    } finally {
      qmp.close();
    }
  } finally {
    q.kill('SIGKILL');
    await closed;
  }
}

type Measures = Record<string, number>;

/** Serve's ports with its NBD server on `port` (NFS on ports of its own, no portmapper). */
const nbdPorts = (port: number): string[] => ['--nfs-port', '0', '--mount-port', '0', '--no-portmap', '--nbd-port', String(port)];
const SEQ = ['nbdcopy MB/s', 'qemu-img convert MB/s'] as const;
const RANDOM = 'fio randread 4K IOPS';

function nbdcopyMBs(uri: string, size: number, runs: number): number {
  return size / 1e6 / best(() => seconds('nbdcopy', [uri, 'null:']), runs);
}

function convertMBs(uri: string, size: number, runs: number): number {
  return size / 1e6 / best(() => seconds('qemu-img', ['convert', '-n', '-f', 'raw', uri, '--target-image-opts', `driver=null-co,size=${size}`]), runs);
}

async function main(): Promise<void> {
  mkdirSync(work, { recursive: true });
  let image = join(work, 'vm.img');
  if (!existsSync(image)) {
    image = join(work, 'nbd.img');
    if (!existsSync(image)) buildSampleImage(image, 1024 * MiB, 700 * MiB);
  }
  const size = statSync(image).size;
  // The boot image of the tests, in a zstd:1 repository of its own.
  const repo = join(work, 'nbd-repo-boot');
  rmSync(repo, { recursive: true, force: true });
  lifeboat(['repo', 'init', repo]);
  const bootImg = join(work, 'boot.img');
  if (!existsSync(bootImg)) execFileSync('bash', ['test/fixtures/make-boot-image.sh', bootImg, join(work, 'boot-build')], { stdio: 'ignore' });
  writeFileSync(join(work, 'boot-vm.json'), JSON.stringify({ memoryMiB: 256, vcpus: 1 }));
  lifeboat(['job', 'create', 'boot', '--repo', repo, '--disk', bootImg, '--vm-config', join(work, 'boot-vm.json')]);
  lifeboat(['backup', 'boot', '--repo', repo]);

  const procs: ChildProcess[] = [];
  const reference: Measures = {};
  /** Lifeboat's NBD server over the image in memory. */
  const ceiling: Measures = {};
  const lifeboatRuns: Record<string, ColdAndWarm> = {};
  const boot: Measures = {};
  try {
    const nbdkit = spawn('nbdkit', ['-f', '-r', '-i', '127.0.0.1', '-p', '10810', 'file', image], { stdio: 'ignore' });
    procs.push(nbdkit);
    await waitFor(() => spawnSync('nbdinfo', ['--size', 'nbd://127.0.0.1:10810']).status === 0, 'nbdkit');
    fromMemory([image]);
    reference[SEQ[0]] = nbdcopyMBs('nbd://127.0.0.1:10810', size, 2);
    fromMemory([image]);
    reference[SEQ[1]] = convertMBs('nbd://127.0.0.1:10810', size, 2);
    fromMemory([image]);
    reference[RANDOM] = fioIops('nbd://127.0.0.1:10810', size);
    const memory = spawn(process.execPath, [join(import.meta.dirname, 'nbd-memory-server.js'), image, '10815'], { stdio: ['ignore', 'ignore', 'inherit'] });
    procs.push(memory);
    await waitFor(() => spawnSync('nbdinfo', ['--size', 'nbd://127.0.0.1:10815']).status === 0, 'the in-memory NBD server');
    ceiling[SEQ[0]] = nbdcopyMBs('nbd://127.0.0.1:10815', size, 2);
    ceiling[SEQ[1]] = convertMBs('nbd://127.0.0.1:10815', size, 2);
    ceiling[RANDOM] = fioIops('nbd://127.0.0.1:10815', size);
    memory.kill('SIGKILL');
    for (const compression of ['zstd:1', 'lz4']) {
      const uri = 'nbd://127.0.0.1:10811/bench/disk0';
      lifeboatRuns[compression] = await coldAndWarm({
        repo: join(work, `nbd-repo-${compression.replace(':', '')}`),
        compression,
        image,
        ports: nbdPorts(10811),
        sequential: [
          [SEQ[0], (runs) => nbdcopyMBs(uri, size, runs)],
          [SEQ[1], (runs) => convertMBs(uri, size, runs)],
        ],
        random: [RANDOM, () => fioIops(uri, size)],
      });
    }

    // Boots: the second and third boot of the session find the first one's blocks decoded (boot prefetch, disk cache).
    const server = await startServe(repo, nbdPorts(10813));
    procs.push(server);
    lifeboat(['instant', 'start', 'boot', '--repo', repo, '--point', 'latest', '--name', 'bootbench']);
    // The same raw file over NBD from nbdkit: what the transport alone adds to the guest's read wait.
    const nbdkitBoot = spawn('nbdkit', ['-f', '-r', '-i', '127.0.0.1', '-p', '10814', 'file', bootImg], { stdio: 'ignore' });
    procs.push(nbdkitBoot);
    await waitFor(() => spawnSync('nbdinfo', ['--size', 'nbd://127.0.0.1:10814']).status === 0, 'nbdkit');
    const local: { seconds: number; readWaitMs: number; reads: number }[] = [];
    const fromSession: { seconds: number; readWaitMs: number; reads: number }[] = [];
    const fromNbdkit: { seconds: number; readWaitMs: number; reads: number }[] = [];
    for (let i = 0; i < 3; i++) {
      fromMemory([bootImg, repo]);
      local.push(await bootOnce(`file=${bootImg},format=raw,if=virtio,readonly=on`));
      fromSession.push(await bootOnce('file=nbd://127.0.0.1:10813/bootbench/disk0,format=raw,if=virtio'));
      fromNbdkit.push(await bootOnce('file=nbd://127.0.0.1:10814,format=raw,if=virtio,readonly=on'));
    }
    boot['nbdkit read wait ms'] = median(fromNbdkit.map((b) => b.readWaitMs));
    boot['reads'] = local[0]!.reads;
    boot['local'] = median(local.map((b) => b.seconds));
    boot['first'] = fromSession[0]!.seconds;
    boot['later'] = median(fromSession.slice(1).map((b) => b.seconds));
    boot['local read wait ms'] = median(local.map((b) => b.readWaitMs));
    boot['first read wait ms'] = fromSession[0]!.readWaitMs;
    boot['later read wait ms'] = median(fromSession.slice(1).map((b) => b.readWaitMs));
  } finally {
    for (const p of procs) p.kill('SIGKILL');
  }
  console.log(`\n${(size / MiB).toFixed(0)} MiB disk: nbdkit serves the raw file (page cache); Lifeboat serves the compressed restore point`);
  console.log('cold: each figure is the first read by a new server with an empty disk cache; warm: a restarted server with the disk cache the cold reads left');
  console.log('measure                      nbdkit   lifeboat (ratio)');
  const rows = (label: string, got: Measures): void => {
    for (const k of [...SEQ, RANDOM]) {
      const g = reference[k]!;
      const l = got[k]!;
      console.log(`${`${label} ${k}`.padEnd(40)}${g.toFixed(0).padStart(8)}  ${l.toFixed(0).padStart(8)} (${(l / g).toFixed(2)}x)`);
    }
  };
  rows('server over memory', ceiling);
  for (const [c, r] of Object.entries(lifeboatRuns)) {
    for (const phase of ['cold', 'warm'] as const) rows(`${c} ${phase}`, r[phase]);
    console.log(`  ${r.caches}`);
  }
  console.log(
    `boot to DISK-OK (TCG): local file ${boot['local']!.toFixed(2)} s (median of 3); session over NBD, first ${boot['first']!.toFixed(2)} s, later boots ${boot['later']!.toFixed(2)} s (ratio ${(boot['later']! / boot['local']!).toFixed(2)})`,
  );
  const wait = (k: string): string => `${boot[`${k} read wait ms`]!.toFixed(1)} ms`;
  console.log(
    `  the guest's read wait to DISK-OK (QMP rd_total_time_ns, ${boot['reads']} reads): local file ${wait('local')}; nbdkit serving that file ${wait('nbdkit')}; session, first ${wait('first')}, later ${wait('later')} (ratio ${(boot['later read wait ms']! / boot['local read wait ms']!).toFixed(2)}; target ≤ 1.5)`,
  );
  writeFileSync(join(work, 'nbd-results.json'), JSON.stringify({ reference, ceiling, lifeboat: lifeboatRuns, boot }, null, 2));
}

await main();
