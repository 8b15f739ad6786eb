/**
 * Instant-recovery load: 64 concurrent clients on 10 sessions of one restore
 * point for 60 s, over NFSv3 (random READs and WRITEs from an in-process
 * client, nfs-cat and nfs-cp through libnfs) and NBD (qemu-io writing and
 * verifying, nbdcopy copying whole disks). Every byte read is checked
 * against what the session must hold (see load-model.ts). Prints the
 * errors (must be 0), the peak RSS of `lifeboat serve` (target: at most
 * 512 MiB + the cache budget) and the throughput per protocol and client.
 *
 *   npm run bench:load
 *   BENCH_LOAD_SECONDS=20 npm run bench:load
 *
 * Also: BENCH_LOAD_CLIENTS (64), BENCH_LOAD_SESSIONS (10), BENCH_LOAD_DISK_MIB
 * (128, the disk of each session), BENCH_LOAD_CACHE_MIB (the cache budget the
 * target allows, 256), BENCH_LOAD_SERVE_ARGS (more `serve` arguments).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { prng } from '../src/testing/prng.js';
import { MiB, bin, lifeboat, work } from './bench-util.js';
import {
  nbdcopyReader,
  nfsCatReader,
  nfsFileWriter,
  nfsRandomReader,
  nfsWriter,
  qemuIoClient,
  Run,
  type ClientContext,
  type Protocol,
  type Tally,
} from './load-clients.js';
import { CHUNK, DiskModel, loadDiskImage } from './load-model.js';

const env = (name: string, fallback: number): number => {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new Error(`${name} must be a positive whole number, not "${v}"`);
  return Number(v);
};
const seconds = env('BENCH_LOAD_SECONDS', 60);
const clientCount = env('BENCH_LOAD_CLIENTS', 64);
const sessionCount = env('BENCH_LOAD_SESSIONS', 10);
const diskMiB = env('BENCH_LOAD_DISK_MIB', 128);
const cacheMiB = env('BENCH_LOAD_CACHE_MIB', 256);
const serveArgs = (process.env['BENCH_LOAD_SERVE_ARGS'] ?? '').split(/\s+/).filter(Boolean);

interface Kind {
  readonly name: string;
  readonly protocol: Protocol;
  /** Clients of this kind per 64. */
  readonly per64: number;
  readonly writes: boolean;
  readonly body: (ctx: ClientContext) => Promise<void>;
}

const KINDS: readonly Kind[] = [
  { name: 'nfs READ (rpc)', protocol: 'nfs', per64: 16, writes: false, body: nfsRandomReader },
  { name: 'nfs WRITE+READ (rpc)', protocol: 'nfs', per64: 12, writes: true, body: nfsWriter },
  { name: 'nfs-cat disk (libnfs)', protocol: 'nfs', per64: 6, writes: false, body: nfsCatReader },
  { name: 'nfs-cp file (libnfs)', protocol: 'nfs', per64: 4, writes: false, body: nfsFileWriter },
  { name: 'qemu-io (nbd)', protocol: 'nbd', per64: 16, writes: true, body: qemuIoClient },
  { name: 'nbdcopy disk (nbd)', protocol: 'nbd', per64: 10, writes: false, body: nbdcopyReader },
];

/** The kind of each client: the per-64 mix scaled to the client count, each kind at least once. */
function mix(n: number): Kind[] {
  const out: Kind[] = [];
  for (const k of KINDS) for (let i = 0; i < Math.max(1, Math.round((k.per64 * n) / 64)); i++) out.push(k);
  while (out.length > n)
    out.splice(
      out.findIndex((k) => k === KINDS[0]),
      1,
    );
  while (out.length < n) out.push(KINDS[0]!);
  // Interleaved, so each session gets a bit of everything.
  return out
    .map((k, i) => ({ k, key: (i * 7919) % out.length }))
    .sort((a, b) => a.key - b.key)
    .map((x) => x.k);
}

interface Served {
  readonly proc: ChildProcess;
  readonly nfsPort: number;
  readonly mountPort: number;
  readonly nbdPort: number;
}

async function serve(repo: string): Promise<Served> {
  const proc = spawn(
    process.execPath,
    [
      bin,
      'serve',
      '--repo',
      repo,
      '--bind',
      '127.0.0.1',
      '--nfs-port',
      '0',
      '--mount-port',
      '0',
      '--nbd-port',
      '0',
      '--no-portmap',
      '--cache-budget',
      `${cacheMiB}M`,
      ...serveArgs,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 200; i++) {
    const m = /NFS on [\d.]+:(\d+), MOUNT on (\d+).*NBD on [\d.]+:(\d+)/.exec(out);
    if (m) return { proc, nfsPort: Number(m[1]), mountPort: Number(m[2]), nbdPort: Number(m[3]) };
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error(`lifeboat serve did not start: ${out}`);
}

/** VmRSS and VmHWM of a process, in bytes (0 once it is gone). */
function memoryOf(pid: number): { rss: number; hwm: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSecondsOf(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

const mib = (bytes: number): string => (bytes / MiB).toFixed(0);

async function main(): Promise<void> {
  const dir = join(work, 'load');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const setupStart = Date.now();
  const base = loadDiskImage(diskMiB);
  const image = join(dir, 'vm.img');
  writeFileSync(image, base);
  const repo = join(dir, 'repo');
  lifeboat(['repo', 'init', repo]);
  lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', image]);
  lifeboat(['backup', 'vm', '--repo', repo]);
  const server = await serve(repo);
  let run: Run | undefined;
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, memoryOf(server.proc.pid!).rss)), 200);
  try {
    const sessions = Array.from({ length: sessionCount }, (_, i) => `s${i}`);
    for (const s of sessions) lifeboat(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', s]);
    const models = new Map(sessions.map((s) => [s, new DiskModel(base)]));
    const kinds = mix(clientCount);
    // Writers of a session share the disk's second half, a slice each; the first half is only read.
    const writersPer = new Map<string, number>();
    kinds.forEach((k, i) => k.writes && writersPer.set(sessions[i % sessionCount]!, (writersPer.get(sessions[i % sessionCount]!) ?? 0) + 1));
    const sliceOf = new Map<string, number>();
    const tallies = new Map<string, Tally>(
      KINDS.map((k) => [k.name, { kind: k.name, protocol: k.protocol, ops: 0, readBytes: 0, writtenBytes: 0, errors: 0 }]),
    );
    const clientDir = join(dir, 'clients');
    mkdirSync(clientDir);
    console.log(
      `load: ${clientCount} clients on ${sessionCount} sessions of a ${diskMiB} MiB disk for ${seconds} s (set up in ${((Date.now() - setupStart) / 1000).toFixed(1)} s; serve pid ${server.proc.pid})`,
    );
    const started = Date.now();
    const cpuBefore = cpuSecondsOf(server.proc.pid!);
    const live = (run = new Run(started + seconds * 1000));
    const clients = kinds.map(async (k, id) => {
      const session = sessions[id % sessionCount]!;
      let slice: { offset: number; length: number } | undefined;
      if (k.writes) {
        const n = sliceOf.get(session) ?? 0;
        sliceOf.set(session, n + 1);
        const length = Math.floor(base.length / 2 / writersPer.get(session)! / CHUNK) * CHUNK;
        slice = { offset: base.length / 2 + n * length, length };
      }
      const ctx: ClientContext = {
        id,
        session,
        model: models.get(session)!,
        nfsPort: server.nfsPort,
        mountPort: server.mountPort,
        nbdPort: server.nbdPort,
        rand: prng(1000 + id),
        tally: tallies.get(k.name)!,
        work: clientDir,
        run: live,
        ...(slice ? { slice } : {}),
      };
      try {
        await k.body(ctx);
      } catch (err) {
        live.error(ctx, `stopped: ${(err as Error).message}`);
      }
    });
    const deadline = setTimeout(() => live.stopStreams(), seconds * 1000);
    await Promise.all(clients);
    clearTimeout(deadline);
    const elapsed = (Date.now() - started) / 1000;
    const { hwm } = memoryOf(server.proc.pid!);
    peakRss = Math.max(peakRss, hwm);
    report([...tallies.values()], elapsed, live.firstErrors, peakRss);
    console.log(
      `serve used ${(cpuSecondsOf(server.proc.pid!) - cpuBefore).toFixed(1)} CPU s in the run (machine: ${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(1)})`,
    );
  } finally {
    clearInterval(sampler);
    run?.killAll();
    const stopped = new Promise((r) => server.proc.on('close', r));
    server.proc.kill('SIGTERM');
    const late = setTimeout(() => server.proc.kill('SIGKILL'), 20_000);
    await stopped;
    clearTimeout(late);
  }
}

function report(tallies: readonly Tally[], elapsed: number, firstErrors: readonly string[], peakRss: number): void {
  const row = (name: string, ts: readonly Tally[]): string => {
    const sum = (f: (t: Tally) => number): number => ts.reduce((a, t) => a + f(t), 0);
    return [
      name.padEnd(24),
      String(sum((t) => t.ops)).padStart(8),
      (sum((t) => t.ops) / elapsed).toFixed(0).padStart(8),
      (sum((t) => t.readBytes) / MiB / elapsed).toFixed(1).padStart(10),
      (sum((t) => t.writtenBytes) / MiB / elapsed).toFixed(1).padStart(10),
      String(sum((t) => t.errors)).padStart(7),
    ].join(' ');
  };
  console.log(
    `${'client'.padEnd(24)} ${'ops'.padStart(8)} ${'ops/s'.padStart(8)} ${'read MiB/s'.padStart(10)} ${'write MiB/s'.padStart(10)} ${'errors'.padStart(7)}`,
  );
  for (const t of tallies) console.log(row(t.kind, [t]));
  for (const p of ['nfs', 'nbd'] as const)
    console.log(
      row(
        `all ${p.toUpperCase()}`,
        tallies.filter((t) => t.protocol === p),
      ),
    );
  console.log(row('all', tallies));
  const errors = tallies.reduce((a, t) => a + t.errors, 0);
  for (const e of firstErrors) console.log(`  error: ${e}`);
  const target = (512 + cacheMiB) * MiB;
  console.log(`ran ${elapsed.toFixed(1)} s; errors: ${errors}`);
  console.log(
    `peak RSS of serve: ${mib(peakRss)} MiB (target: at most 512 MiB + ${cacheMiB} MiB cache budget = ${mib(target)} MiB)${peakRss > target ? ': OVER' : ''}`,
  );
  if (errors > 0 || peakRss > target) process.exitCode = 1;
}

await main();
