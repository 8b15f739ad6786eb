/**
 * The spawner: a small process that starts a server's helper processes
 * (qemu-storage-daemon, qemu-nbd) for it (spawner.ts is its client).
 *
 * Why: Linux copies a process's page tables when it forks, so `spawn` from
 * a server of 300–400 MiB blocks the calling thread for 10–12 ms (about
 * 1 ms from a process of 40 MiB), and a backup run waits for its storage
 * daemon. This process stays small, so it forks in about a millisecond.
 *
 * It listens on the unix socket named by its first argument (in a 0700
 * folder of the server's), and speaks one JSON object per line:
 *   in:  {id, op:"spawn", cmd, args, nice}   {id, op:"kill", signal}
 *   out: {id, pid} {id, stderr} {id, error, code} {id, exit:[code, signal]}
 * A child's exit is sent once its standard error is read to the end. When
 * a client's connection closes, the children it started are sent SIGTERM;
 * when the server goes (this process's standard input ends), every child
 * is, and the spawner exits. SIGINT and SIGTERM are the server's to handle:
 * the spawner outlives them until the server closes its end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { setPriority } from 'node:os';

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
if (socketPath === undefined) throw new Error('usage: spawner-process.js <socket path>');

const children = new Set<ChildProcess>();

function serve(conn: Socket): void {
  const mine = new Map<number, ChildProcess>();
  const send = (m: Record<string, unknown>): void => {
    if (!conn.destroyed) conn.write(`${JSON.stringify(m)}\n`);
  };
  const handle = (r: SpawnRequest | KillRequest): void => {
    if (r.op === 'kill') {
      mine.get(r.id)?.kill(r.signal);
      return;
    }
    const child = spawn(r.cmd, r.args, { stdio: ['ignore', 'ignore', 'pipe'] });
    mine.set(r.id, child);
    children.add(child);
    // Nice is per process here: the child gets the caller's thread's (its own would be the spawner's).
    if (child.pid !== undefined && r.nice !== 0) {
      try {
        setPriority(child.pid, r.nice);
      } catch {
        // A priority the spawner may not set (raising it needs privileges): the child runs at the spawner's.
      }
    }
    if (child.pid !== undefined) send({ id: r.id, pid: child.pid });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => send({ id: r.id, stderr: text }));
    child.on('error', (err: NodeJS.ErrnoException) => {
      mine.delete(r.id);
      children.delete(child);
      send({ id: r.id, error: err.message, code: err.code ?? null });
    });
    // 'close': exited and its standard error read to the end, so no stderr message comes after the exit.
    child.on('close', (code, signal) => {
      if (!mine.has(r.id)) return;
      mine.delete(r.id);
      children.delete(child);
      send({ id: r.id, exit: [code, signal] });
    });
  };
  let buffered = '';
  conn.setEncoding('utf8');
  conn.on('data', (text: string) => {
    buffered += text;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        handle(JSON.parse(line) as SpawnRequest | KillRequest);
      } catch {
        // Only the server's threads can reach this socket: a line that is not a request is dropped.
      }
    }
  });
  conn.on('error', () => undefined);
  conn.on('close', () => {
    for (const child of mine.values()) child.kill('SIGTERM');
  });
}

process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
const server = createServer(serve);
server.listen(socketPath, () => process.stdout.write('ready\n'));
process.stdin.resume();
process.stdin.on('end', () => {
  for (const child of children) child.kill('SIGTERM');
  server.close();
  process.exit(0);
});
