/**
 * bench:s3's instant-recovery part: a sequential read of a published point
 * (`nbdcopy` to null:) from a server on the S3 repository and from one on a
 * local repository holding the same image, cold (a new server, its caches
 * empty) and warm (the server started again: the blocks the cold read decoded
 * are in its disk cache).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { bin, fromMemory, seconds } from './bench-util.js';

interface Running {
  readonly proc: ChildProcess;
  readonly nbdPort: number;
}

/** `lifeboat serve` for `repo`, with every port ephemeral and no scheduler; resolves once it serves NBD. */
async function serve(repo: string, stateDir: string, env: NodeJS.ProcessEnv): Promise<Running> {
  const args = ['serve', '--repo', repo, '--state-dir', stateDir, '--no-scheduler', '--http-port', '0', '--no-tls', '--no-portmap'];
  const proc = spawn(process.execPath, [bin, ...args, '--nfs-port', '0', '--mount-port', '0', '--nbd-port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const m = /NBD on [\d.]+:(\d+)/.exec(out);
    if (m && /HTTP API on/.test(out)) return { proc, nbdPort: Number(m[1]) };
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error(`lifeboat serve --repo ${repo} did not start: ${out}`);
}

async function stop(s: Running): Promise<void> {
  const exited = new Promise<void>((r) => s.proc.once('exit', () => r()));
  s.proc.kill('SIGTERM');
  await exited;
}

function lifeboatOk(args: string[], env: NodeJS.ProcessEnv): string {
  const r = spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`lifeboat ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The `disk cache:` line of `instant list`: what the disk cache holds and how often reads found their block there. */
const diskCacheLine = (repo: string, env: NodeJS.ProcessEnv): string =>
  /^disk cache: .*$/m.exec(lifeboatOk(['instant', 'list', '--repo', repo], env))?.[0].replace(/ in \S+/, '') ?? 'disk cache: (not shown)';

/** Cold and warm seconds of reading the point of `repo`'s job `vm` through a session of its server. */
async function readTimes(
  repo: string,
  stateDir: string,
  env: NodeJS.ProcessEnv,
  localFiles: string[],
): Promise<{ cold: number; warm: number; afterCold: string; afterWarm: string }> {
  let s = await serve(repo, stateDir, env);
  try {
    lifeboatOk(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest', '--name', 'bench'], env);
    const url = `nbd://127.0.0.1:${s.nbdPort}/bench/disk0`;
    fromMemory(localFiles);
    const cold = seconds('nbdcopy', [url, 'null:']);
    const afterCold = diskCacheLine(repo, env);
    await stop(s);
    s = await serve(repo, stateDir, env);
    fromMemory(localFiles);
    const warm = seconds('nbdcopy', [`nbd://127.0.0.1:${s.nbdPort}/bench/disk0`, 'null:']);
    const afterWarm = diskCacheLine(repo, env);
    lifeboatOk(['instant', 'stop', 'bench', '--repo', repo], env);
    return { cold, warm, afterCold, afterWarm };
  } finally {
    await stop(s);
  }
}

/**
 * Backs the image up into a local repository too, then reads the point of
 * each through instant recovery; prints the rows and returns nothing.
 * `s3Repo`'s job `vm` must already hold the image's latest state.
 */
export async function instantReads(workDir: string, s3Repo: string, image: string, imageBytes: number, env: NodeJS.ProcessEnv): Promise<void> {
  const localRepo = join(workDir, 'local-repo');
  lifeboatOk(['repo', 'init', localRepo], env);
  lifeboatOk(['job', 'create', 'vm', '--repo', localRepo, '--disk', image], env);
  lifeboatOk(['backup', 'vm', '--repo', localRepo], env);
  // The S3 repository's host side (sessions, disk cache) in a folder of this run.
  const s3Env = { ...env, LIFEBOAT_STATE_DIR: join(workDir, 's3-host') };
  rmSync(s3Env.LIFEBOAT_STATE_DIR, { recursive: true, force: true });
  const s3 = await readTimes(s3Repo, join(workDir, 's3-state'), s3Env, []);
  const local = await readTimes(localRepo, join(workDir, 'local-state'), env, [localRepo]);
  const mbps = (s: number): string => (imageBytes / 1e6 / s).toFixed(0).padStart(6);
  console.log('\ninstant recovery, nbdcopy of the point to null: (cold: a new server; warm: started again, its disk cache kept)');
  console.log('repository   cold s   MB/s   warm s   MB/s');
  for (const [name, t] of [
    ['local', local],
    ['S3', s3],
  ] as const)
    console.log(
      `${name.padEnd(11)}${t.cold.toFixed(2).padStart(7)}${mbps(t.cold)}${t.warm.toFixed(2).padStart(9)}${mbps(t.warm)}   after cold: ${t.afterCold}; after warm: ${t.afterWarm}`,
    );
  console.log(`S3 against local: cold ${(s3.cold / local.cold).toFixed(2)}x the time, warm ${(s3.warm / local.warm).toFixed(2)}x (target: warm within 1.2x)`);
}
