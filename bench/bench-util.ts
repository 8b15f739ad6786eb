/** What every benchmark script shares: where it works, how it calls Lifeboat, how it times a tool. */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const MiB = 1024 * 1024;
export const work = resolve(process.env['BENCH_DIR'] ?? 'bench-work');
export const bin = resolve('bin/lifeboat.js');

/** Runs the `lifeboat` command; `now` pins its clock (LIFEBOAT_NOW). */
export function lifeboat(args: string[], now?: string): string {
  return execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...(now ? { LIFEBOAT_NOW: now } : {}) } });
}

/** Wall seconds of one run of a tool (its stdout discarded); throws with its stderr if it fails. */
export function seconds(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr?.toString()}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export const best = (f: () => number, n = 2): number => Math.min(...Array.from({ length: n }, f));

export async function waitFor(check: () => boolean, what: string, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The environment restic and borg run in: unencrypted throwaway repositories, no prompts. */
export const referenceToolEnv = {
  ...process.env,
  RESTIC_PASSWORD: 'bench',
  BORG_PASSPHRASE: '',
  BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
  BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
};

/** Bytes of every file below `dir`: a repository's size. */
export function duBytes(dir: string): number {
  let total = 0;
  for (const n of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, n.name);
    total += n.isDirectory() ? duBytes(p) : statSync(p).size;
  }
  return total;
}

/**
 * The same start for runs a bench compares: the machine's dirty pages written out (sync(1)), then every file of
 * `paths` (folders read whole) read into the page cache. These machines page out memory unused for a minute
 * (docs/design.md, Measurements), so without it one side of a comparison reads from memory and the other from the
 * disk, depending on how long ago the bench last touched its files.
 */
export function fromMemory(paths: readonly string[]): void {
  execFileSync('sync');
  const buf = Buffer.allocUnsafe(8 * MiB);
  const read = (path: string): void => {
    const st = statSync(path);
    if (st.isDirectory()) {
      for (const name of readdirSync(path)) read(join(path, name));
      return;
    }
    // Sockets and FIFOs are not read (opening a FIFO would wait for a writer).
    if (!st.isFile()) return;
    const fd = openSync(path, 'r');
    try {
      while (readSync(fd, buf, 0, buf.length, null) > 0);
    } finally {
      closeSync(fd);
    }
  };
  for (const p of paths) read(p);
}

/** `lifeboat serve` on `repo` with `ports` (its --nfs-port, --mount-port, --nbd-port…); its recorded sessions reopen. */
export async function startServe(repo: string, ports: readonly string[]): Promise<ChildProcess> {
  rmSync(join(repo, 'instant', 'control.json'), { force: true });
  const p = spawn(process.execPath, [bin, 'serve', '--repo', repo, '--bind', '127.0.0.1', ...ports], {
    stdio: 'ignore',
  });
  await waitFor(() => existsSync(join(repo, 'instant', 'control.json')), 'lifeboat serve');
  return p;
}

/** Stops a server: SIGTERM (the disk cache's writes under way finish) or SIGKILL. */
export async function stopServe(p: ChildProcess, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill(signal);
  await exited;
}

/** The caches' line of `instant list` (hits, misses, what the disk cache holds). */
export function cacheLines(repo: string): string {
  return lifeboat(['instant', 'list', '--repo', repo])
    .split('\n')
    .filter((l) => /cache:/.test(l))
    .join('\n  ');
}

/**
 * Waits until the disk cache's block count holds still for a second (it
 * writes what a fast reader's pass could not keep at once after the reads
 * pause); the seconds it took.
 */
export async function diskCacheSettled(repo: string): Promise<number> {
  const t0 = performance.now();
  const blocks = (): number => Number(/disk cache: .*\((\d+) blocks\)/.exec(cacheLines(repo))?.[1] ?? -1);
  let last = blocks();
  for (let still = 0; still < 2 && performance.now() - t0 < 60_000;) {
    await new Promise((r) => setTimeout(r, 500));
    const now = blocks();
    still = now === last ? still + 1 : 0;
    last = now;
  }
  return (performance.now() - t0) / 1000;
}

export interface ColdAndWarm {
  readonly cold: Record<string, number>;
  readonly warm: Record<string, number>;
  /** What `instant list` said of the caches after the cold reads and after the warm ones. */
  readonly caches: string;
}

/** One figure: its name, and how to measure it as the best of `runs` reads. */
export type Figure = readonly [name: string, measure: (runs: number) => number | Promise<number>];

/**
 * One repository of `image` (`compression`), read through one session named
 * `bench` of a `lifeboat serve` with `ports`: cold (a new server with an
 * empty disk cache for each figure, each the first read; the random one
 * first) and warm (the server restarted with the disk cache the cold reads
 * left, once it has written them; each the best of two). Each server stops
 * with SIGTERM, so one on the portmapper takes its ports off it.
 */
export async function coldAndWarm(opts: {
  readonly repo: string;
  readonly compression: string;
  readonly image: string;
  readonly ports: readonly string[];
  readonly sequential: readonly Figure[];
  readonly random: Figure;
}): Promise<ColdAndWarm> {
  const { repo, ports } = opts;
  rmSync(repo, { recursive: true, force: true });
  lifeboat(['repo', 'init', repo, '--compression', opts.compression]);
  lifeboat(['job', 'create', 'vm', '--repo', repo, '--disk', opts.image]);
  lifeboat(['backup', 'vm', '--repo', repo]);
  const cold: Record<string, number> = {};
  const warm: Record<string, number> = {};
  let server = await startServe(repo, ports);
  try {
    lifeboat(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'bench']);
    // Cold and warm name Lifeboat's own caches; the repository's files (and the disk cache's) are in the machine's
    // page cache before each figure, as the reference's raw file is (fromMemory).
    for (const [i, [name, measure]] of [opts.random, ...opts.sequential].entries()) {
      if (i > 0) {
        await stopServe(server, 'SIGTERM');
        rmSync(join(repo, 'cache', 'blocks'), { recursive: true, force: true });
        server = await startServe(repo, ports);
      }
      fromMemory([repo]);
      cold[name] = await measure(1);
    }
    const settled = await diskCacheSettled(repo);
    const afterCold = cacheLines(repo);
    await stopServe(server, 'SIGTERM');
    server = await startServe(repo, ports);
    for (const [name, measure] of [...opts.sequential, opts.random]) {
      fromMemory([repo]);
      warm[name] = await measure(2);
    }
    return {
      cold,
      warm,
      caches: `after the cold reads (settled in ${settled.toFixed(1)} s):\n  ${afterCold}\n  after the warm reads:\n  ${cacheLines(repo)}`,
    };
  } finally {
    await stopServe(server, 'SIGTERM');
  }
}
