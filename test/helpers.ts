import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LifeboatService } from '../src/app/index.js';
import { fixedClock } from '../src/core/clock.js';
import type { PinnedBytes } from '../src/core/pinned-bytes.js';
import { filesForPoint, type ChainFile } from '../src/repository/job-state.js';
import type { Storage } from '../src/storage/index.js';

export const BIN = fileURLToPath(new URL('../../bin/lifeboat.js', import.meta.url));

export async function tempDir(prefix = 'lifeboat-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the real `lifeboat` command as a child process; `input`, if given, is its standard input (a pipe: not a terminal).
 * A command still running after `timeoutMs` (default 5 min) is killed and fails the test with its arguments, its
 * standard error so far and the processes it had started, so that a hang names itself instead of holding the run.
 */
export function cli(args: string[], env: Record<string, string> = {}, input?: string, timeoutMs = 5 * 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      const children = spawnSync('ps', ['-o', 'pid,stat,wchan:24,args', '--ppid', String(p.pid)], { encoding: 'utf8' }).stdout;
      p.kill('SIGKILL');
      reject(new Error(`lifeboat ${args.join(' ')} did not end within ${timeoutMs} ms; killed.\nstderr: ${stderr.slice(-4000)}\nits processes:\n${children}`));
    }, timeoutMs);
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    if (input !== undefined) p.stdin!.end(input);
  });
}

/** `r` when the command exited 0; else the test fails with `what` and the command's standard error. */
export function expectOk(r: CliResult, what: string): CliResult {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  return r;
}

/** Every regular file under `dir`, at any depth (a repository's files, to search their bytes). */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** A loopback TCP port nobody listens on right now (bound, then released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Polls `f` until it gives a value (every 50 ms by default), or fails naming `what` after `ms`. */
export async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000, everyMs = 50): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A deterministic PRNG, so a failing model run can be replayed from its seed. */
export { prng as rng } from '../src/testing/prng.js';

/** Bytes that compress a little (like real data), from the PRNG. */
export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n + 4);
  for (let i = 0; i < n; i += 4) {
    const mask = rand() < 0.3 ? 0x0f0f0f0f : 0xffffffff;
    b.writeUInt32LE((Math.floor(rand() * 2 ** 32) & mask) >>> 0, i);
  }
  return b.subarray(0, n);
}

export async function writeAt(path: string, data: Buffer, offset: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

/** Guest-like writes: `count` random stretches of `length` seeded bytes, into the disk file and into `content` (its bytes in memory) alike. */
export async function scatterWrites(disk: string, content: Buffer, rand: () => number, count: number, length: number): Promise<void> {
  for (let k = 0; k < count; k++) {
    const off = Math.floor(rand() * (content.length - length));
    const chunk = randomBytes(rand, length);
    chunk.copy(content, off);
    await writeAt(disk, chunk, off);
  }
}

/** Reads a whole point disk through the virtual-disk API. */
export async function readPoint(repo: string, job: string, point: string, disk = '0'): Promise<Buffer> {
  const svc = new LifeboatService(fixedClock(new Date()));
  const opened = await svc.openPointDisk(repo, job, point, disk);
  try {
    return await opened.disk.read(0, opened.disk.size);
  } finally {
    await opened.disk.close();
  }
}

export function serviceAt(iso: string): LifeboatService {
  return new LifeboatService(fixedClock(new Date(iso)));
}

/**
 * Port 111 (the portmapper: QEMU's nfs:// always asks it) is one per machine;
 * test files that bind it run one at a time through this lock.
 */
export async function withPort111<T>(fn: () => Promise<T>): Promise<T> {
  const { LockFile } = await import('../src/storage/lock-file.js');
  const lock = await LockFile.acquire('/tmp/lifeboat-test-port111.lock', 'port 111', { waitMs: 10 * 60_000 });
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

export const MiB = 1024 * 1024;

/** What `backup --json` reports that tests look at. */
export interface BackupRun {
  readonly pointId: string;
  readonly kind: string;
  readonly bytesRead: number;
  readonly blocksStored: number;
  readonly blocksUnchanged: number;
  readonly seconds: number;
  readonly steps: Record<string, number>;
}

/** One `lifeboat backup <job> --json` that must succeed; its time by step must add up. */
export async function backupJson(repo: string, job: string, env: Record<string, string> = {}): Promise<BackupRun> {
  const r = await cli(['backup', job, '--repo', repo, '--json'], env);
  if (r.code !== 0) throw new Error(`backup ${job} failed: ${r.stderr}`);
  const run = JSON.parse(r.stdout) as BackupRun;
  const steps = Object.entries(run.steps);
  // A reverse incremental run updates the full in place: its data step is "reverse".
  for (const want of ['scan', run.steps['reverse'] === undefined ? 'data' : 'reverse', 'retention']) {
    if (run.steps[want] === undefined) throw new Error(`backup ${job}: no "${want}" in its steps ${JSON.stringify(run.steps)}`);
  }
  const sum = steps.reduce((a, [, ms]) => a + ms, 0);
  if (steps.some(([, ms]) => !(ms >= 0)) || sum > run.seconds * 1000 + 1)
    throw new Error(`backup ${job}: steps ${JSON.stringify(run.steps)} do not fit in ${run.seconds} s`);
  return run;
}

/** A point as `points --json` lists it. */
export interface ListedPoint {
  readonly id: string;
  readonly kind: string;
  readonly file: string;
  readonly chainId: string;
  readonly available: boolean;
}

/** The job's restorable points, oldest first. */
export async function availablePoints(repo: string, job = 'vm'): Promise<ListedPoint[]> {
  return (JSON.parse((await cli(['points', job, '--repo', repo, '--json'])).stdout) as ListedPoint[]).filter((p) => p.available);
}

/** A raw disk of `sizeMiB` MiB, zeros but for random stretches of `length` bytes at the given MiB offsets; returns its bytes. */
export async function writeRawDisk(path: string, rand: () => number, sizeMiB: number, atMiB: readonly number[], length: number): Promise<Buffer> {
  const content = Buffer.alloc(sizeMiB * MiB);
  for (const at of atMiB) randomBytes(rand, length).copy(content, at * MiB);
  await writeFile(path, content);
  return content;
}

/** A repository at `<dir>/repo` with job `job` (one disk, `<dir>/vm.img`, holding `content`) and one point, made through the CLI; returns its path. */
export async function repoWithPoint(dir: string, content: Buffer, job = 'vm'): Promise<string> {
  const repo = join(dir, 'repo');
  const disk = join(dir, 'vm.img');
  await writeFile(disk, content);
  for (const args of [
    ['repo', 'init', repo],
    ['job', 'create', job, '--repo', repo, '--disk', disk],
    ['backup', job, '--repo', repo],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 0, r.stderr);
  }
  return repo;
}

/**
 * An IPv4 address of this machine that is not loopback, to connect from (a
 * peer the allow lists see as remote). A machine without one gets
 * an address of 192.0.2.0/24 (TEST-NET-1, never routed) on lo for the test's time; that
 * needs root, as the suite does.
 */
export async function nonLoopbackAddress(): Promise<{ address: string; cleanup: () => Promise<void> }> {
  const own = Object.values(networkInterfaces())
    .flat()
    .find((i) => i?.family === 'IPv4' && !i.internal)?.address;
  if (own !== undefined) return { address: own, cleanup: async () => undefined };
  const address = `192.0.2.${10 + (process.pid % 240)}`; // one per test process: files run side by side
  execFileSync('ip', ['addr', 'replace', `${address}/32`, 'dev', 'lo']);
  return { address, cleanup: async () => void execFileSync('ip', ['addr', 'del', `${address}/32`, 'dev', 'lo'], { stdio: 'ignore' }) };
}

/** Lent bytes as one buffer: the part itself when there is one, else a copy of them all. */
export function joined(p: PinnedBytes): Buffer {
  return p.parts.length === 1 ? p.parts[0]! : Buffer.concat(p.parts as Buffer[], p.length);
}

/** The chain files of job `job`'s latest point in `repo`, and the repository's storage: what RestorePointDisk.open takes. */
export async function latestPointFiles(repo: string, job = 'vm'): Promise<{ files: ChainFile[]; storage: Storage }> {
  const { state, repo: r } = await serviceAt('2026-01-01T00:00:00Z').jobState(repo, job);
  return { files: filesForPoint(state, state.points[state.points.length - 1]!.id)!, storage: r.storage };
}
