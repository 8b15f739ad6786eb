/**
 * The file-level recovery benchmark: a Lifeboat point against libguestfs run
 * directly on the raw disk image, side by side in one run, on the same disk.
 *
 * The disk: one ext4 file system (mkfs.ext4 -d, no root needed) holding a
 * 200 MiB file of random bytes and a folder of 10,000 small files (1 to
 * 4 KiB), backed up once into a fresh repository.
 *
 *   lifeboat: `lifeboat serve` runs for the repository and the user's commands
 *     are handed to it (src/cli/files-hand-off.ts): time to the first listing
 *     is `lifeboat files ls <job> --point latest /` from the command's start
 *     (the point's NBD export, the appliance's boot, the disks inspected, the
 *     file systems mounted, the listing); then `files get … /big.bin --to`
 *     and `files get … /many --to` on the booted session (the appliance's
 *     download and tar-out, written again by the server with holes, extracted
 *     by the CLI).
 *   direct: `guestfish --listen --ro -a raw.img` (the same appliance, the same
 *     backend): time to the first listing is listen + run + mount-ro + ls /;
 *     then `download /big.bin` and `copy-out /many` on the booted appliance
 *     (what virt-copy-out does after its boot).
 * Every timed step starts with its side's disk in the page cache (the
 * repository, or the raw image; the cached appliance too before a first
 * listing) and nothing waiting to be written (fromMemory).
 * Ratios: download throughput lifeboat/direct (target ≥ 0.8x), first listing
 * lifeboat/direct (target < 2x). LIBGUESTFS_BACKEND=direct and
 * LIBGUESTFS_BACKEND_SETTINGS=force_tcg unless set.
 *
 *   npm run bench:files   (BENCH_DIR: where the images go, default bench-work)
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB, bin, fromMemory, lifeboat, seconds, work } from './bench-util.js';

process.env['LIBGUESTFS_BACKEND'] ??= 'direct';
// KVM aborts the appliance on these machines (as in the tests): TCG unless the environment says otherwise.
process.env['LIBGUESTFS_BACKEND_SETTINGS'] ??= 'force_tcg';
process.env['LIBGUESTFS_CACHEDIR'] ??= '/var/tmp';
const BIG_MIB = 200;
const SMALL_FILES = 10_000;

/** libguestfs's cached appliance (kernel, initrd, root), which both sides boot: read into memory before each first listing. */
const appliance = (): string[] => {
  const dir = join(process.env['LIBGUESTFS_CACHEDIR']!, `.guestfs-${process.getuid!()}`, 'appliance.d');
  return existsSync(dir) ? [dir] : [];
};

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const du = (dir: string): number => Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);

function gf(pid: number, ...args: string[]): void {
  execFileSync('guestfish', [`--remote=${pid}`, '--', ...args], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 });
}

/** `lifeboat serve` for the repository, on ephemeral ports; waits (up to 5 min: a loaded machine) for its HTTP API line. */
async function startServe(repo: string): Promise<{ proc: ChildProcess; log: () => string; exited: Promise<void> }> {
  const ports = ['--nfs-port', '0', '--mount-port', '0', '--nbd-port', '0', '--http-port', '0'];
  const proc = spawn(
    process.execPath,
    [bin, 'serve', '--repo', repo, '--bind', '127.0.0.1', ...ports, '--no-tls', '--no-portmap', '--no-scheduler', '--state-dir', `${repo}.state`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 3000 && !/HTTP API on /.test(out); i++) {
    if (proc.exitCode !== null) throw new Error(`serve ended: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!/HTTP API on /.test(out)) throw new Error(`serve did not start: ${out}`);
  return { proc, log: () => out, exited };
}

async function main(): Promise<void> {
  const dir = join(work, 'files-bench');
  await rm(dir, { recursive: true, force: true });
  const src = join(dir, 'src');
  await mkdir(join(src, 'many'), { recursive: true });
  execFileSync('sh', ['-c', `head -c ${BIG_MIB * MiB} /dev/urandom > ${join(src, 'big.bin')}`]);
  let x = 1;
  for (let i = 0; i < SMALL_FILES; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    await writeFile(join(src, 'many', `f${String(i).padStart(5, '0')}.txt`), `${i} `.repeat(256 + (x % 768)));
  }
  const bigSha = sha(await readFile(join(src, 'big.bin')));
  const manyBytes = du(join(src, 'many'));
  const raw = join(dir, 'raw.img');
  execFileSync('truncate', ['-s', '512M', raw]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', src, raw]);
  await rm(src, { recursive: true, force: true });
  const repo = join(dir, 'repo');
  lifeboat(['repo', 'init', repo]);
  lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', raw]);
  lifeboat(['backup', 'vm', '--repo', repo]);

  // libguestfs builds its appliance at its first boot on a machine: built now, outside both sides' times.
  if (appliance().length === 0) execFileSync('guestfish', ['--ro', '-a', raw, 'run'], { stdio: 'ignore', timeout: 600_000 });

  // Lifeboat: serve, and the CLI handed to it.
  const out = join(dir, 'out');
  await mkdir(out);
  const server = await startServe(repo);
  let lb: { firstListing: number; big: number; many: number };
  try {
    fromMemory([repo, ...appliance()]);
    const firstListing = seconds(process.execPath, [bin, 'files', 'ls', 'vm', '--repo', repo, '--point', 'latest', '/']);
    fromMemory([repo]);
    const big = seconds(process.execPath, [bin, 'files', 'get', 'vm', '/big.bin', '--repo', repo, '--point', 'latest', '--to', join(out, 'lb-big.bin')]);
    fromMemory([repo]);
    const many = seconds(process.execPath, [bin, 'files', 'get', 'vm', '/many', '--repo', repo, '--point', 'latest', '--to', join(out, 'lb-many')]);
    lb = { firstListing, big, many };
    // The commands ran synchronously: the server's log lines of that time are read on this loop's next turns.
    await new Promise((r) => setTimeout(r, 500));
    if ((server.log().match(/files: session opened/g) ?? []).length !== 1)
      throw new Error(`the commands did not use one session of the server:\n${server.log()}`);
  } finally {
    server.proc.kill('SIGTERM');
    await server.exited;
  }
  if (sha(await readFile(join(out, 'lb-big.bin'))) !== bigSha) throw new Error('lifeboat: big.bin differs');
  if (du(join(out, 'lb-many')) !== manyBytes) throw new Error(`lifeboat: many/ holds ${du(join(out, 'lb-many'))} bytes, not ${manyBytes}`);

  // Direct: one guestfish server on the raw image.
  fromMemory([raw, ...appliance()]);
  const t0 = performance.now();
  // --listen forks a daemon that keeps its standard output: a file, not a pipe (a pipe would never close).
  const log = join(dir, 'guestfish.log');
  const fd = openSync(log, 'w');
  execFileSync('guestfish', ['--listen', '--ro', '-a', raw], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const pid = Number(/GUESTFISH_PID=(\d+)/.exec(await readFile(log, 'utf8'))![1]);
  let direct: { firstListing: number; big: number; many: number };
  try {
    gf(pid, 'run');
    gf(pid, 'mount-ro', '/dev/sda', '/');
    gf(pid, 'ls', '/');
    const firstListing = (performance.now() - t0) / 1000;
    await mkdir(join(out, 'direct-many'));
    fromMemory([raw]);
    const big = seconds('guestfish', [`--remote=${pid}`, '--', 'download', '/big.bin', join(out, 'direct-big.bin')]);
    fromMemory([raw]);
    const many = seconds('guestfish', [`--remote=${pid}`, '--', 'copy-out', '/many', join(out, 'direct-many')]);
    direct = { firstListing, big, many };
  } finally {
    execFileSync('guestfish', [`--remote=${pid}`, '--', 'exit'], { stdio: 'ignore' });
  }
  if (sha(await readFile(join(out, 'direct-big.bin'))) !== bigSha) throw new Error('direct: big.bin differs');
  if (du(join(out, 'direct-many', 'many')) !== manyBytes) throw new Error('direct: many/ differs');

  const mbps = (bytes: number, s: number): string => (bytes / MiB / s).toFixed(1);
  const rows = [
    ['first listing (s)', lb.firstListing.toFixed(1), direct.firstListing.toFixed(1), `${(lb.firstListing / direct.firstListing).toFixed(2)}x`, '< 2x'],
    [`${BIG_MIB} MiB file (MiB/s)`, mbps(BIG_MIB * MiB, lb.big), mbps(BIG_MIB * MiB, direct.big), `${(direct.big / lb.big).toFixed(2)}x`, '≥ 0.8x'],
    [
      `${SMALL_FILES} files, ${(manyBytes / MiB).toFixed(1)} MiB (files/s)`,
      (SMALL_FILES / lb.many).toFixed(0),
      (SMALL_FILES / direct.many).toFixed(0),
      `${(direct.many / lb.many).toFixed(2)}x`,
      '≥ 0.8x',
    ],
  ];
  console.log(`file-level recovery, ${new Date().toISOString()}, LIBGUESTFS_BACKEND=${process.env['LIBGUESTFS_BACKEND']}`);
  console.log(['', 'lifeboat', 'direct', 'ratio', 'target'].join(' | '));
  for (const r of rows) console.log(r.join(' | '));
  console.log(JSON.stringify({ lifeboat: lb, direct, bigMiB: BIG_MIB, smallFiles: SMALL_FILES, manyBytes }));
  await rm(dir, { recursive: true, force: true });
}

await main();
