import { processAlive } from '../core/process-alive.js';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { LifeboatError } from '../core/errors.js';

/** How long one remote command may take (the appliance's boot is the longest: ~30 s under TCG). */
const COMMAND_TIMEOUT_MS = 300_000;
const STDERR_TAIL = 2000;
/** How long a live server may take to bind its socket after `--listen` returned. */
const SOCKET_WAIT_MS = 30_000;

export function tail(text: string): string {
  const t = text.trim();
  return t.length > STDERR_TAIL ? `…${t.slice(-STDERR_TAIL)}` : t;
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (!processAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !processAlive(pid);
}

/** Ends a process we started (and recorded) if it still runs: TERM, then KILL. */
export async function endProcess(pid: number | undefined, graceMs = 5000): Promise<void> {
  if (pid === undefined || pid <= 0 || !processAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitGone(pid, graceMs)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitGone(pid, 5000);
}

/** The environment of guestfish: the direct backend unless the user chose one (libvirt needs libvirtd), and temporary files in our folder. */
export function guestfishEnv(tmpDir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    LIBGUESTFS_BACKEND: process.env['LIBGUESTFS_BACKEND'] ?? 'direct',
    // The appliance's overlays go to our folder, removed with it (LIBGUESTFS_CACHEDIR, the cached appliance, is left as it is).
    LIBGUESTFS_TMPDIR: tmpDir,
  };
}

export interface RemoteResult {
  readonly ok: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * One guestfish server (`guestfish --listen`) and its appliance, driven with
 * `guestfish --remote=<pid>` one command at a time. Every command is sent with
 * guestfish's `-` prefix: without it the server exits on the first failing
 * command (a file system that does not mount must not end the session). The
 * remote client then exits 0 and says nothing: the server prints a failure
 * ("libguestfs: error:") on its own standard error, our log file, so each
 * command's failure is what the log gained while it ran (commands run one at
 * a time).
 */
export class Guestfish {
  private runner: ChildProcess | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private constructor(
    readonly pid: number,
    private readonly env: NodeJS.ProcessEnv,
    private readonly logFile: string,
  ) {}

  /**
   * Starts the server. `guestfish --listen` forks a daemon that keeps the
   * standard output it was given: a pipe would stay open (and a reader wait)
   * as long as the server runs, so both outputs go to `logFile`, which keeps
   * what the server says later too.
   */
  static async listen(env: NodeJS.ProcessEnv, logFile: string): Promise<Guestfish> {
    const fd = openSync(logFile, 'a', 0o600);
    let code: number | null;
    try {
      code = await new Promise<number | null>((resolve, reject) => {
        const child = spawn('guestfish', ['--listen'], { env, stdio: ['ignore', fd, fd] });
        const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
        child.on('error', (err: NodeJS.ErrnoException) => {
          clearTimeout(t);
          reject(
            new LifeboatError(
              'LFB_ERR_GUESTFS',
              err.code === 'ENOENT'
                ? 'guestfish is not installed: file-level recovery needs libguestfs (apt-get install libguestfs-tools)'
                : `guestfish --listen failed: ${err.message}`,
            ),
          );
        });
        child.on('exit', (c) => {
          clearTimeout(t);
          resolve(c);
        });
      });
    } finally {
      closeSync(fd);
    }
    const out = await readFile(logFile, 'utf8');
    const m = /GUESTFISH_PID=(\d+)/.exec(out);
    if (code !== 0 || !m) throw new LifeboatError('LFB_ERR_GUESTFS', `guestfish --listen failed (exit ${code}): ${tail(out)}`);
    return new Guestfish(Number(m[1]), env, logFile);
  }

  /**
   * Runs one command; never throws for the command's own failure (see `ok`).
   * Commands run one at a time, in the order asked: the server serves one
   * client at a time anyway, and a command queued here is not yet timing
   * out behind a long download. `signal` takes a command out of the queue
   * before it starts (an aborted one resolves as failed); `onStart` is told
   * when it starts.
   */
  remote(cmd: string, ...args: string[]): Promise<RemoteResult> {
    return this.queued(cmd, args, {});
  }

  queued(cmd: string, args: readonly string[], o: { timeoutMs?: number; signal?: AbortSignal; onStart?: () => void }): Promise<RemoteResult> {
    const run = (): Promise<RemoteResult> => {
      if (o.signal?.aborted === true) return Promise.resolve({ ok: false, stdout: '', stderr: 'cancelled before it started' });
      o.onStart?.();
      return this.exec(cmd, args, o.timeoutMs ?? COMMAND_TIMEOUT_MS);
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  private async exec(cmd: string, args: readonly string[], timeoutMs: number): Promise<RemoteResult> {
    const logFrom = await logSize(this.logFile);
    const giveUp = performance.now() + Math.min(timeoutMs, SOCKET_WAIT_MS);
    let r: { err: Error | null; stdout: string; stderr: string };
    for (;;) {
      r = await new Promise((resolve) =>
        execFile(
          'guestfish',
          [`--remote=${this.pid}`, '--', `-${cmd}`, ...args],
          { env: this.env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
          (err, stdout, stderr) => resolve({ err, stdout, stderr }),
        ),
      );
      // The client says this when it could not connect, before it sent anything, and exits 0 all the same (the
      // command's `-` lets it fail). A live server has not bound its socket yet: `--listen` prints the pid of the
      // server it forks before the server binds (libguestfs calls this race unavoidable), so the first command can
      // come too early. It is sent again; nothing of it reached the server.
      if (!r.stderr.includes('server is not running')) break;
      if (!processAlive(this.pid) || performance.now() >= giveUp)
        throw new LifeboatError(
          'LFB_ERR_GUESTFS',
          processAlive(this.pid)
            ? `the guestfish server (pid ${this.pid}) did not take commands within ${SOCKET_WAIT_MS / 1000} s: ${tail(r.stderr)}`
            : `the guestfish server (pid ${this.pid}) has ended: ${tail(r.stderr)}`,
        );
      await new Promise((res) => setTimeout(res, 50));
    }
    const serverSaid = await logSince(this.logFile, logFrom);
    const stderr = [r.stderr, serverSaid].filter((t) => t !== '').join('\n') || (r.err?.message ?? '');
    return { ok: r.err === null && !stderr.includes('libguestfs: error:'), stdout: r.stdout, stderr };
  }

  /** Runs one command; its failure is LFB_ERR_GUESTFS with guestfish's words. */
  async must(cmd: string, ...args: string[]): Promise<string> {
    const r = await this.remote(cmd, ...args);
    if (!r.ok) throw new LifeboatError('LFB_ERR_GUESTFS', `guestfish ${cmd} failed: ${tail(r.stderr)}`, { details: { command: cmd } });
    return r.stdout;
  }

  async lines(cmd: string, ...args: string[]): Promise<string[]> {
    return (await this.must(cmd, ...args)).split('\n').filter((l) => l !== '');
  }

  /** The appliance's QEMU, to end it if the server cannot. */
  async qemuPid(): Promise<number | undefined> {
    const r = await this.remote('get-pid');
    const n = Number(r.stdout.trim());
    return r.ok && Number.isInteger(n) && n > 0 ? n : undefined;
  }

  /**
   * Serves the FUSE tree mount-local made, until it is unmounted
   * (`mount-local-run` blocks the server meanwhile, so nothing else is asked of it).
   */
  serveMountLocal(onExit: (stderr: string) => void): void {
    const child = spawn('guestfish', [`--remote=${this.pid}`, '--', 'mount-local-run'], { env: this.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_TAIL)));
    child.on('error', (e) => onExit(e.message));
    child.on('exit', () => onExit(stderr));
    this.runner = child;
  }

  /** Waits for `mount-local-run` to return (after the FUSE tree was unmounted). */
  async waitMountLocalRun(ms: number): Promise<boolean> {
    const r = this.runner;
    if (!r || r.exitCode !== null || r.signalCode !== null) return true;
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      r.once('exit', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  /** Ends the server and its appliance, whatever state they are in. */
  async shutdown(qemuPid: number | undefined): Promise<void> {
    if (this.runner && this.runner.exitCode === null) this.runner.kill('SIGKILL');
    // Not queued: a command still running (a download whose reader is gone) must not keep the server alive.
    if (processAlive(this.pid)) await this.exec('exit', [], 5000).catch(() => undefined);
    await endProcess(this.pid);
    await endProcess(qemuPid);
  }
}

async function logSize(file: string): Promise<number> {
  return (await stat(file).catch(() => ({ size: 0 }))).size;
}

/** What the server wrote to its log from `from` on (at most the last STDERR_TAIL bytes of it). */
async function logSince(file: string, from: number): Promise<string> {
  const size = await logSize(file);
  if (size <= from) return '';
  const start = Math.max(from, size - STDERR_TAIL);
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(size - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** Whether `dir` is a mount point now (the FUSE tree of a browse). */
export async function isMountPoint(dir: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const escaped = dir.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return info.split('\n').some((l) => l.split(' ')[4] === escaped);
}

/** Unmounts a FUSE tree (lazily if it is busy, so a kill -9'd browse never leaves it behind). */
export async function unmountFuse(dir: string): Promise<void> {
  if (!(await isMountPoint(dir))) return;
  const run = (args: string[]): Promise<boolean> => new Promise((resolve) => execFile('fusermount', args, { timeout: 30_000 }, (err) => resolve(err === null)));
  if (await run(['-u', dir])) return;
  if (await run(['-u', '-z', dir])) return;
  await new Promise((resolve) => execFile('umount', ['-l', dir], { timeout: 30_000 }, resolve));
}
