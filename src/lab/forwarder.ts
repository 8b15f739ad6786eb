/**
 * Port forwards from the host into a lab (`--forward 127.0.0.1:15432=db:5432`).
 * A process of the host's namespace cannot connect to a lab address, and a lab
 * has no route out, so a forward has two halves: a TCP listener in the host's
 * namespace (this process) and a relay inside the lab's namespace
 * (netns-relay.ts, started with `ip netns exec`) that listens on a unix socket
 * (a file, which both namespaces reach) and connects to <vm ip>:<port>. Each
 * TCP connection gets its own unix connection, joined both ways with
 * backpressure and half-close; an error on any hop closes both ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { connect, createServer, isIP, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { LifeboatError } from '../core/index.js';
import { findTool } from './netns.js';
import { joinSockets } from './socket-join.js';

export const NETNS_RELAY = fileURLToPath(new URL('./netns-relay.js', import.meta.url));
/** Connections one forward carries at once; more are closed at once (a runaway client cannot exhaust the host). */
export const DEFAULT_MAX_CONNECTIONS = 64;
const RELAY_START_MS = 10_000;
const RELAY_STOP_MS = 5_000;
/** Longest unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

export interface LabForwardSpec {
  /** Host address to listen on (127.0.0.1 when the flag names none). */
  readonly host: string;
  /** Host port; 0 takes any free one (reported by the forward). */
  readonly port: number;
  readonly job: string;
  readonly toPort: number;
}

const portOf = (text: string, flag: string): number => {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= 65535)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--forward ${flag}: ${JSON.stringify(text)} is not a port (0-65535)`);
  return n;
};

/** Parses `[<host>:]<port>=<job>:<port>` (an IPv6 host in brackets: `[::1]:8080=web:80`). */
export function parseForward(text: string): LabForwardSpec {
  const m = /^(?:(\[[^\]]+\]|[^:=[\]]+):)?(\d+)=(.+):(\d+)$/.exec(text);
  if (!m) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--forward ${text}: expected [<host>:]<port>=<job>:<port>, e.g. 127.0.0.1:15432=db:5432`);
  const host = m[1] === undefined ? '127.0.0.1' : m[1].replace(/^\[(.*)\]$/, '$1');
  const toPort = portOf(m[4]!, text);
  if (toPort === 0) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--forward ${text}: the lab side needs a port (1-65535)`);
  return { host, port: portOf(m[2]!, text), job: m[3]!, toPort };
}

/** Whether a listen address is the host's loopback (reached only from this host). */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/**
 * A forward listening beyond loopback hands the sandboxed copy of production to
 * anyone who reaches the host: only with an explicit --forward-any.
 */
export function checkForwardHost(host: string, allowAny: boolean): void {
  if (isLoopbackHost(host) || allowAny) return;
  throw new LifeboatError(
    'LFB_ERR_INVALID_ARGUMENT',
    `--forward on ${host}: a forward listens on the host's loopback (127.0.0.1 or ::1) unless --forward-any is given, since anyone who reaches ${host} would reach the lab's VM`,
    { details: { host } },
  );
}

export interface LabForwardOptions {
  /** The lab's namespace (`lfb-lab-<id>`). */
  readonly netns: string;
  /** Folder for the unix socket; a private folder in the system's temporary folder when none is given or its path is too long. */
  readonly socketDir?: string;
  readonly listenHost: string;
  readonly listenPort: number;
  readonly targetIp: string;
  readonly targetPort: number;
  readonly allowNonLoopback?: boolean;
  readonly maxConnections?: number;
}

export interface LabForward {
  /** Where the host side listens (the port the system chose when 0 was asked). */
  readonly listen: { readonly host: string; readonly port: number };
  /** `<ip>:<port>` in the lab. */
  readonly target: string;
  readonly relayPid: number;
  readonly socketPath: string;
  /** Connections open now. */
  active(): number;
  /** Stops listening, closes every connection, ends the relay (SIGKILL after 5 s) and removes its socket. */
  close(): Promise<void>;
}

/** Starts both halves of a forward; on failure nothing of it is left. */
export async function startLabForward(o: LabForwardOptions): Promise<LabForward> {
  checkForwardHost(o.listenHost, o.allowNonLoopback ?? false);
  const max = o.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const name = `fwd-${randomBytes(4).toString('hex')}.sock`;
  let privateDir: string | undefined;
  let socketPath = o.socketDir === undefined ? '' : join(o.socketDir, name);
  if (socketPath === '' || Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    privateDir = await mkdtemp(join(tmpdir(), 'lfb-fwd-'));
    socketPath = join(privateDir, name);
  }
  const removeSocket = async (): Promise<void> => {
    await rm(privateDir ?? socketPath, { recursive: true, force: true });
  };
  let relay: ChildProcess | undefined;
  try {
    relay = await startRelay(o.netns, socketPath, o.targetIp, o.targetPort, max);
    const { server, active } = await listenOnHost(o.listenHost, o.listenPort, socketPath, max);
    const port = (server.address() as { port: number }).port;
    const r = relay;
    let closing: Promise<void> | undefined;
    return {
      listen: { host: o.listenHost, port },
      target: `${o.targetIp}:${o.targetPort}`,
      relayPid: r.pid!,
      socketPath,
      active: () => active.size,
      close: () =>
        (closing ??= (async () => {
          server.close();
          for (const s of active) s.destroy();
          await stopRelay(r);
          await removeSocket();
        })()),
    };
  } catch (err) {
    if (relay) await stopRelay(relay);
    await removeSocket();
    throw err;
  }
}

async function startRelay(netns: string, socketPath: string, ip: string, port: number, max: number): Promise<ChildProcess> {
  const child = spawn(findTool('ip'), ['netns', 'exec', netns, process.execPath, NETNS_RELAY, socketPath, ip, String(port), String(max)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    if (err.length < 4096) err += d.toString();
  });
  // The relay's stdin is its lifeline: an error writing to it (the relay gone) is not this process's failure.
  child.stdin!.on('error', () => undefined);
  // A program that cannot be run is reported as an event: unheard, it would end this whole process.
  let spawnError: string | undefined;
  child.on('error', (e) => (spawnError ??= e.message));
  const started = performance.now();
  while (!out.includes('listening\n')) {
    if (spawnError !== undefined || child.exitCode !== null || child.signalCode !== null || performance.now() - started > RELAY_START_MS) {
      if (spawnError === undefined) await stopRelay(child);
      throw new LifeboatError(
        'LFB_ERR_LAB',
        `the forward's relay to ${ip}:${port} inside ${netns} did not start: ${spawnError ?? (err.trim() || `no answer within ${RELAY_START_MS / 1000} s`)}`,
        {
          details: { netns, ip, port },
        },
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return child;
}

/** Closes the relay's stdin (it removes its socket and exits); SIGKILL if it has not ended after 5 s. */
async function stopRelay(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.stdin!.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), RELAY_STOP_MS);
  await gone;
  clearTimeout(timer);
}

async function listenOnHost(host: string, port: number, socketPath: string, max: number): Promise<{ server: Server; active: Set<Socket> }> {
  const active = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (client) => {
    if (active.size >= max) {
      client.destroy();
      return;
    }
    active.add(client);
    client.on('close', () => active.delete(client));
    joinSockets(client, connect({ path: socketPath, allowHalfOpen: true }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'EADDRINUSE'
          ? new LifeboatError('LFB_ERR_PORT_IN_USE', `--forward ${host}:${port}: the port is in use; choose another, or 0 for any free one`, {
              cause: e,
              details: { host, port },
            })
          : new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--forward ${host}:${port}: cannot listen there (${e.code ?? e.message})`, {
              cause: e,
              details: { host, port },
            }),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  return { server, active };
}

/**
 * Removes the relay sockets in `dir` that nothing listens on: a relay killed
 * with -9 together with its owner (both in one process group) could not
 * remove its own. A socket whose relay runs accepts, and is left alone.
 */
export async function removeStaleForwardSockets(dir: string): Promise<string[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^fwd-[0-9a-f]+\.sock$/.test(n));
  const removed: string[] = [];
  for (const n of names) {
    const path = join(dir, n);
    const stale = await new Promise<boolean>((resolve) => {
      const s = connect({ path });
      s.once('connect', () => (s.destroy(), resolve(false)));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
    });
    if (stale) {
      await rm(path, { force: true });
      removed.push(path);
    }
  }
  return removed;
}
