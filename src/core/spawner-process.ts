/**
 * The spawner: a small process that starts a server's helper processes
 * (qemu-storage-daemon, qemu-nbd) for it (spawner.ts is its client).
 *
 * Why: Linux copies a process's page tables when it forks, so `spawn` from
 * a server of 300–400 MiB blocks the calling thread for 10–12 ms (about
 * 1 ms from a process of 40 MiB), and a backup run waits for its storage
 * daemon. This process stays small, so it forks in about a millisecond.
 *
 * Arguments: the unix socket to listen on (in a 0700 folder of its own,
 * removed when it ends) and the grace in ms between SIGTERM and SIGKILL. It
 * speaks one JSON object per line:
 *   in:  {id, op:"spawn", cmd, args, nice}   {id, op:"kill", signal}
 *   out: {id, pid, start} {id, stderr} {id, error, code} {id, exit:[code, signal]}
 * Every spawn is answered, with a pid or an error. A child's exit is sent
 * once its standard error is read to the end. When a client's connection
 * closes, the children it started are ended; when the server goes (this
 * process's standard input ends or breaks) every child is, and the spawner
 * exits. Ended: SIGTERM, then SIGKILL after the grace. SIGINT and SIGTERM
 * are the server's to handle: the spawner outlives them until the server
 * closes its end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { getPriority } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { readJsonLines } from './json-lines.js';
import { processStartTime } from './process-alive.js';

interface SpawnRequest {
  readonly id: number;
  readonly op: 'spawn';
  readonly cmd: string;
  readonly args: readonly string[];
  readonly nice: number;
}
interface KillRequest {
  readonly id: number;
  readonly op: 'kill';
  readonly signal: NodeJS.Signals;
}

const socketPath = process.argv[2];
const graceMs = Number(process.argv[3] ?? 20_000);
if (socketPath === undefined) throw new Error('usage: spawner-process.js <socket path> [grace ms]');

const children = new Set<ChildProcess>();
const ownNice = getPriority();

/** SIGTERM now, SIGKILL after the grace if it is still there; resolves once it is gone. */
function end(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  return gone.finally(() => clearTimeout(timer));
}

/** The program `cmd` names (a path, or found on PATH), or undefined when there is none to run. */
function executable(cmd: string): string | undefined {
  const runnable = (path: string): boolean => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (cmd.includes('/')) return runnable(cmd) ? cmd : undefined;
  return (process.env['PATH'] ?? '')
    .split(delimiter)
    .filter((d) => d !== '')
    .map((d) => join(d, cmd))
    .find(runnable);
}

function serve(conn: Socket): void {
  const mine = new Map<number, ChildProcess>();
  const send = (m: Record<string, unknown>): void => {
    if (!conn.destroyed) conn.write(`${JSON.stringify(m)}\n`);
  };
  const failed = (id: number, message: string, code: string | null): void => send({ id, error: message, code });
  const start = (r: SpawnRequest): void => {
    const program = executable(r.cmd);
    if (program === undefined) return failed(r.id, `spawn ${r.cmd} ENOENT`, 'ENOENT');
    // Nice is per thread on Linux: `nice` sets it before the program runs, so every thread it starts has it.
    // Only lowered: raising a priority needs privileges, and the caller never asks for more than the server's.
    const lower = r.nice - ownNice;
    let child: ChildProcess;
    try {
      child =
        lower > 0
          ? spawn('nice', ['-n', String(lower), program, ...r.args], { stdio: ['ignore', 'ignore', 'pipe'] })
          : spawn(program, r.args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      // Errors Node throws rather than reports (ENOTDIR, E2BIG, …): answered all the same.
      return failed(r.id, err instanceof Error ? err.message : String(err), (err as NodeJS.ErrnoException).code ?? null);
    }
    let settled = false;
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      mine.delete(r.id);
      children.delete(child);
      failed(r.id, err.message, err.code ?? null);
    });
    if (child.pid === undefined) return; // Not started: its 'error' comes next.
    mine.set(r.id, child);
    children.add(child);
    send({ id: r.id, pid: child.pid, start: processStartTime(child.pid) ?? null });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => send({ id: r.id, stderr: text }));
    // 'close': exited and its standard error read to the end, so no stderr message comes after the exit.
    child.once('close', (code, signal) => {
      mine.delete(r.id);
      children.delete(child);
      if (settled) return;
      settled = true;
      send({ id: r.id, exit: [code, signal] });
    });
  };
  readJsonLines(
    conn,
    (value) => {
      const r = value as SpawnRequest | KillRequest;
      if (r.op === 'kill') mine.get(r.id)?.kill(r.signal);
      else if (r.op === 'spawn') start(r);
    },
    // Only the server's threads can reach this socket (its folder is 0700): a line that is not a request is dropped.
    () => undefined,
  );
  conn.on('error', () => undefined);
  conn.on('close', () => {
    for (const child of mine.values()) void end(child);
  });
}

process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
const server = createServer(serve);
server.listen(socketPath, () => process.stdout.write('ready\n'));

let ending = false;
/** The server is gone or done: every child ended, the socket's folder removed, then exit. */
async function shutDown(): Promise<void> {
  if (ending) return;
  ending = true;
  server.close();
  await Promise.all([...children].map(end));
  rmSync(dirname(socketPath!), { recursive: true, force: true });
  process.exit(0);
}
process.stdin.on('end', () => void shutDown());
process.stdin.on('close', () => void shutDown());
process.stdin.on('error', () => void shutDown());
process.stdin.resume();
