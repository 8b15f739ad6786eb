/** What every benchmark script shares: where it works, how it calls Lifeboat, how it times a tool. */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
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
