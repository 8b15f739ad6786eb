import { spawn, type ChildProcess } from 'node:child_process';
import { BIN } from './helpers.js';

export interface Server {
  proc: ChildProcess;
  nfsPort: number;
  mountPort: number;
  nbdPort: number;
  /** The HTTP API's base URL (…/api/v1). */
  httpUrl: string;
  /** Everything the server printed so far. */
  log: () => string;
  /** Resolves when the process has exited (whenever that was: before or after a caller starts waiting). */
  exited: Promise<void>;
}

/** Starts `lifeboat serve` as a real process; resolves once it has said its ports. */
export async function startServer(repo: string, args: string[] = [], opts: { defaultPorts?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Server> {
  const proc = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--repo',
      repo,
      '--bind',
      '127.0.0.1',
      ...(opts.defaultPorts ? [] : ['--nfs-port', '0', '--mount-port', '0', '--nbd-port', '0']),
      // Each server its own state folder (catalog, heartbeat) and an ephemeral plain-HTTP API port, unless the test says otherwise.
      ...(args.includes('--state-dir') ? [] : ['--state-dir', `${repo}.state`]),
      ...(args.includes('--http-port') ? [] : ['--http-port', '0']),
      ...(args.includes('--tls-cert') || args.includes('--no-tls') ? [] : ['--no-tls']),
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) },
  );
  // 'exit', not 'close': a child of the server (a booted VM) may hold its output pipes open after it died.
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let out = '';
  const log = { text: () => out };
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  // Long enough for a loaded 2-core machine (a serve has taken 25 s to open its API there); a server that exits fails at once.
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const m = /NFS on [\d.]+:(\d+), MOUNT on (\d+).*NBD on [\d.]+:(\d+)/.exec(out);
    const h = /HTTP API on (\S+)/.exec(out);
    if (m && h) return { proc, nfsPort: Number(m[1]), mountPort: Number(m[2]), nbdPort: Number(m[3]), httpUrl: h[1]!, log: log.text, exited };
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error(`server did not start within 60 s or exited (code ${proc.exitCode}): ${out}`);
}

/** Kills the server with SIGKILL and waits for its exit; returns at once for a server that has already exited (waiting for a 'close' that came before never ended). */
export async function kill9(s: Server): Promise<void> {
  s.proc.kill('SIGKILL');
  await s.exited;
}
