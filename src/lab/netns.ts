/**
 * Thin wrappers over `ip` for the virtual lab: namespaces, links and programs
 * run inside a namespace. Every command has a deadline, and a failure names the
 * step, the command line and what the tool printed (LFB_ERR_LAB), so a lab that
 * cannot be made or removed says why in the tool's own words.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { LifeboatError } from '../core/index.js';

/** Deadline of one `ip` command: they are quick; one that hangs is a broken system, not a slow one. */
export const IP_TIMEOUT_MS = 10_000;
/** Output kept per stream: enough for any error message or probe result, bounded for a runaway program. */
const MAX_OUTPUT = 1 << 20;

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

const PACKAGES: Record<string, string> = { ip: 'iproute2', dnsmasq: 'dnsmasq-base' };

/** The absolute path of `name` on PATH (as a shell would find it), or LFB_ERR_TOOL_MISSING. */
export function findTool(name: string, pathEnv: string = process.env['PATH'] ?? ''): string {
  for (const dir of pathEnv.split(delimiter)) {
    if (dir === '') continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not in this folder
    }
  }
  const pkg = PACKAGES[name];
  throw new LifeboatError('LFB_ERR_TOOL_MISSING', `the virtual lab needs ${name}, which is not on PATH${pkg ? `: install it (apt-get install ${pkg})` : ''}`, {
    details: { tool: name },
  });
}

/** The virtual lab needs root: namespaces, bridges and taps are made by root only. */
export function assertRoot(step: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    throw new LifeboatError(
      'LFB_ERR_LAB',
      `${step}: the virtual lab needs root (network namespaces, bridges and taps); this process runs as uid ${process.getuid()}`,
      {
        details: { step },
      },
    );
}

/**
 * Runs a program with a deadline and never throws for its exit status. The
 * program gets a process group of its own so that at the deadline it and
 * everything it started (a shell's children) are killed together.
 */
export function runCommand(file: string, args: readonly string[], opts: { timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const finish = (): void => {
      if (settled || exited === undefined) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      resolve({
        ...exited,
        stdout,
        stderr: timedOut ? `${stderr}${stderr && !stderr.endsWith('\n') ? '\n' : ''}[killed after ${opts.timeoutMs} ms]` : stderr,
        timedOut,
      });
    };
    p.stdout.on('data', (d: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += d.toString();
    });
    let grace: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(p.pid);
      // A grandchild that escaped the group could hold the pipes open: answer anyway soon after.
      grace = setTimeout(() => {
        p.stdout.destroy();
        p.stderr.destroy();
        exited ??= { code: null, signal: 'SIGKILL' };
        finish();
      }, 1000);
    }, opts.timeoutMs);
    p.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      reject(
        e.code === 'ENOENT'
          ? new LifeboatError('LFB_ERR_TOOL_MISSING', `the virtual lab needs ${file}, which is not installed`, { cause: e, details: { tool: file } })
          : new LifeboatError('LFB_ERR_LAB', `running ${file}: ${e.message}`, { cause: e }),
      );
    });
    p.on('exit', (code, signal) => {
      exited = { code, signal };
      // After the deadline the streams may stay open (see above); otherwise wait for their last bytes.
      if (timedOut) finish();
    });
    p.on('close', (code, signal) => {
      exited ??= { code, signal };
      finish();
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

const quote = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
export const commandLine = (file: string, args: readonly string[]): string => [file, ...args].map(quote).join(' ');

/** An LFB_ERR_LAB naming the step, the command and the tool's words. */
export function labError(step: string, file: string, args: readonly string[], r: RunResult): LifeboatError {
  const cmd = commandLine(file, args);
  const status = r.timedOut ? `did not finish within its deadline` : r.code !== null ? `failed (exit ${r.code})` : `was killed by ${r.signal}`;
  const words = r.stderr.trim() || r.stdout.trim() || '(no output)';
  return new LifeboatError('LFB_ERR_LAB', `${step}: \`${cmd}\` ${status}: ${words}`, {
    details: { step, command: cmd, code: r.code, stderr: r.stderr.trim() },
  });
}

/** Runs `ip <args>`; a nonzero exit is LFB_ERR_LAB unless `tolerate` matches its message (e.g. "does not exist" when removing). */
export async function ip(args: readonly string[], step: string, opts: { tolerate?: RegExp; timeoutMs?: number } = {}): Promise<RunResult> {
  const file = findTool('ip');
  const r = await runCommand(file, args, { timeoutMs: opts.timeoutMs ?? IP_TIMEOUT_MS });
  if (r.code === 0) return r;
  if (!r.timedOut && opts.tolerate?.test(r.stderr)) return r;
  throw labError(step, 'ip', args, r);
}

/** What `ip` says when the thing to remove is already gone. */
const GONE = /Cannot find device|No such file or directory|does not exist|Invalid "netns" value|Cannot open network namespace/i;

export async function netnsList(): Promise<string[]> {
  const r = await ip(['netns', 'list'], 'listing network namespaces');
  // "name (id: 3)" or "name"
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

export async function netnsExists(ns: string): Promise<boolean> {
  return (await netnsList()).includes(ns);
}

export async function netnsAdd(ns: string): Promise<void> {
  await ip(['netns', 'add', ns], `making network namespace ${ns}`);
}

/** Removes the namespace's name; a namespace already gone is fine. */
export async function netnsDelete(ns: string): Promise<void> {
  await ip(['netns', 'delete', ns], `removing network namespace ${ns}`, { tolerate: GONE });
}

/** The pids of the processes inside a namespace (`ip netns pids`); none when it does not exist. */
export async function netnsPids(ns: string): Promise<number[]> {
  const r = await ip(['netns', 'pids', ns], `listing the processes in ${ns}`, { tolerate: GONE });
  if (r.code !== 0) return [];
  return r.stdout
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}

/** `ip` arguments for a namespace (`-n <ns>`) or the host's (`ns` undefined). */
const nsArgs = (ns: string | undefined): string[] => (ns === undefined ? [] : ['-n', ns]);

export async function linkExists(name: string, ns?: string): Promise<boolean> {
  const r = await ip([...nsArgs(ns), 'link', 'show', 'dev', name], `looking for ${name}${ns ? ` in ${ns}` : ''}`, { tolerate: GONE });
  return r.code === 0;
}

/** Names of the links in a namespace (or the host's) matching `re`. */
export async function linkNames(re: RegExp, ns?: string): Promise<string[]> {
  const r = await ip([...nsArgs(ns), '-o', 'link', 'show'], `listing the links${ns ? ` of ${ns}` : ''}`, { tolerate: GONE });
  if (r.code !== 0) return [];
  const names: string[] = [];
  for (const line of r.stdout.split('\n')) {
    // "12: lfb1t0@if3: <...>" or "5: lfbbr0: <...>"
    const m = /^\d+:\s+([^:@\s]+)/.exec(line);
    if (m && re.test(m[1]!)) names.push(m[1]!);
  }
  return names;
}

/** Deletes a link; one already gone is fine. */
export async function linkDelete(name: string, ns?: string): Promise<void> {
  await ip([...nsArgs(ns), 'link', 'delete', 'dev', name], `removing ${name}${ns ? ` from ${ns}` : ''}`, { tolerate: GONE });
}

/** The alias (ifalias) of a link, or undefined when it has none or does not exist. */
export async function linkAlias(name: string, ns?: string): Promise<string | undefined> {
  const r = await ip([...nsArgs(ns), '-d', 'link', 'show', 'dev', name], `reading the alias of ${name}`, { tolerate: GONE });
  if (r.code !== 0) return undefined;
  return /^\s+alias (.*)$/m.exec(r.stdout)?.[1]?.trim();
}

/** Runs a program inside a namespace (`ip netns exec`); its exit status is returned, never thrown. */
export function execInNetns(ns: string, file: string, args: readonly string[], opts: { env?: Record<string, string>; timeoutMs: number }): Promise<RunResult> {
  return runCommand(findTool('ip'), ['netns', 'exec', ns, file, ...args], { timeoutMs: opts.timeoutMs, env: { ...process.env, ...opts.env } });
}

/** Sends SIGKILL to each pid, ignoring those already gone. */
export function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
