/**
 * Helper processes (qemu-storage-daemon, qemu-nbd), started directly or,
 * in a server, by its spawner process (spawner-process.ts): a small
 * process forks in about a millisecond where a server of 300–400 MiB
 * blocks the calling thread for 10–12 ms per `spawn`.
 *
 * `startSpawner` (the server, at start-up) starts the spawner; each thread
 * that starts helpers through it calls `useSpawner` with its socket. Without
 * one, or when it cannot be reached, helpers are spawned directly: the
 * caller sees the same events either way.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readJsonLines } from './json-lines.js';
import { processRunning, processStartTime } from './process-alive.js';

/** SIGTERM to SIGKILL, for helpers whose spawner went away and for the spawner's own children. */
const DEFAULT_GRACE_MS = 20_000;

/**
 * A helper process: emits 'stderr' (text), then 'exit' (code, signal) once
 * it ended and its standard error was read to the end; or, instead, 'error'
 * (an Error with a `code`) when it was not started: ENOENT when there is no
 * such program, ESPAWNER when its spawner went away before it said.
 */
export class HelperProcess extends EventEmitter {
  /** Known once it started (through a spawner, a moment after spawnHelper returns). */
  pid: number | undefined;
  /** How a signal reaches it: through the spawner, or to the child directly. */
  signaller: (signal: NodeJS.Signals) => void = () => undefined;
  private ended = false;

  /** Reports its end, once: a second report (a direct child's 'close' after its 'error') is dropped. */
  end(how: { code: number | null; signal: NodeJS.Signals | null } | { error: Error }): void {
    if (this.ended) return;
    this.ended = true;
    if ('error' in how) this.emit('error', how.error);
    else this.emit('exit', how.code, how.signal);
  }

  /** Sends `signal` (SIGTERM by default); false once it ended. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.ended) return false;
    this.signaller(signal);
    return true;
  }
}

/** Starts `cmd args` with no standard input or output and its standard error read: through this thread's spawner, if it has one. */
export function spawnHelper(cmd: string, args: readonly string[]): HelperProcess {
  return client !== undefined && !client.broken ? client.spawn(cmd, args) : spawnDirectly(cmd, args, new HelperProcess());
}

function spawnDirectly(cmd: string, args: readonly string[], helper: HelperProcess): HelperProcess {
  let child;
  try {
    child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    // Thrown rather than reported (ENOTDIR, E2BIG, …): reported as a spawner reports it, after the caller listens.
    queueMicrotask(() => helper.end({ error: err instanceof Error ? err : new Error(String(err)) }));
    return helper;
  }
  helper.signaller = (s) => child.kill(s);
  helper.pid = child.pid;
  child.on('error', (error) => helper.end({ error }));
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => helper.emit('stderr', text));
  // 'close' rather than 'exit': its standard error is read to the end first, as through a spawner.
  child.on('close', (code, signal) => helper.end({ code, signal }));
  return helper;
}

const notStarted = (message: string, code: string): Error => Object.assign(new Error(message), { code });

type SpawnerMessage =
  | { id: number; pid: number; start: string | null }
  | { id: number; stderr: string }
  | { id: number; error: string; code: string | null }
  | { id: number; exit: [number | null, NodeJS.Signals | null] };

interface Asked {
  readonly helper: HelperProcess;
  readonly cmd: string;
  readonly args: readonly string[];
  /** Its process's start time, with the pid: what names it if the spawner goes away. */
  start?: string | undefined;
}

/** This thread's connection to the spawner: one socket, requests and answers matched by id. */
class SpawnerClient {
  broken = false;
  private socket: Socket | undefined;
  private connected = false;
  private nextId = 1;
  private readonly live = new Map<number, Asked>();

  constructor(
    private readonly path: string,
    private readonly graceMs: number,
  ) {}

  spawn(cmd: string, args: readonly string[]): HelperProcess {
    const id = this.nextId++;
    const helper = new HelperProcess();
    helper.signaller = (signal) => this.send({ id, op: 'kill', signal });
    this.live.set(id, { helper, cmd, args });
    // Linux nice is per thread: the helper runs at the caller's (a backup thread's lowered one).
    this.send({ id, op: 'spawn', cmd, args, nice: getPriority() });
    return helper;
  }

  private send(request: Record<string, unknown>): void {
    const socket = this.socket ?? this.open();
    // Only while helpers run does the connection keep the thread's event loop alive, as their processes would.
    if (this.live.size > 0) socket.ref();
    socket.write(`${JSON.stringify(request)}\n`);
  }

  private open(): Socket {
    const socket = connect(this.path);
    this.socket = socket;
    socket.once('connect', () => (this.connected = true));
    // A line that is not an answer means the spawner is not what it should be: treated as gone.
    readJsonLines(
      socket,
      (m) => this.answer(m as SpawnerMessage),
      () => socket.destroy(),
    );
    socket.on('error', () => undefined);
    socket.on('close', () => this.lost());
    return socket;
  }

  private answer(m: SpawnerMessage): void {
    const asked = this.live.get(m.id);
    if (asked === undefined) return;
    const { helper } = asked;
    if ('pid' in m) {
      helper.pid = m.pid;
      asked.start = m.start ?? undefined;
    } else if ('stderr' in m) helper.emit('stderr', m.stderr);
    else {
      this.live.delete(m.id);
      if (this.live.size === 0) this.socket?.unref();
      if ('exit' in m) helper.end({ code: m.exit[0], signal: m.exit[1] });
      else helper.end({ error: Object.assign(new Error(m.error), m.code === null ? {} : { code: m.code }) });
    }
  }

  /**
   * The spawner cannot be reached, or went away; later helpers are spawned directly. Never reached: nothing was
   * started, so each helper asked of it is started directly now. Gone: the helpers it started are ended here (by
   * pid and start time), and ones it had not said it started are reported as not started (ESPAWNER).
   */
  private lost(): void {
    this.broken = true;
    const asked = [...this.live.values()];
    this.live.clear();
    for (const a of asked) {
      if (!this.connected) spawnDirectly(a.cmd, a.args, a.helper);
      else if (a.helper.pid !== undefined) void endOrphan(a.helper, a.helper.pid, a.start, this.graceMs);
      else a.helper.end({ error: notStarted('the spawner process ended before it said it had started the helper', 'ESPAWNER') });
    }
  }
}

/**
 * A helper whose spawner went away: sent SIGTERM (a storage daemon stores its bitmaps then), SIGKILL if it is
 * still there after the grace, and its end reported once it is gone (so what it held, an image's lock, is free).
 * Signals go only to the process of that pid and start time: never to another that reused the pid.
 */
async function endOrphan(helper: HelperProcess, pid: number, start: string | undefined, graceMs: number): Promise<void> {
  const same = (): boolean => processRunning(pid) && (start === undefined || processStartTime(pid) === start);
  const signal = (s: NodeJS.Signals): void => {
    try {
      if (same()) process.kill(pid, s);
    } catch {
      // Gone between the check and the signal.
    }
  };
  helper.signaller = signal;
  signal('SIGTERM');
  const started = performance.now();
  let killed = false;
  while (same()) {
    if (!killed && performance.now() - started > graceMs) {
      signal('SIGKILL');
      killed = true;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  // How it ended is not known here (its parent, the spawner, would have been told).
  helper.end({ code: null, signal: null });
}

let client: SpawnerClient | undefined;

/** This thread starts its helpers through the spawner at `socketPath` (undefined: directly). */
export function useSpawner(socketPath: string | undefined, graceMs = DEFAULT_GRACE_MS): void {
  client = socketPath === undefined ? undefined : new SpawnerClient(socketPath, graceMs);
}

/** A started spawner: its socket (for useSpawner in each thread) and how to end it. */
export interface Spawner {
  readonly socketPath: string;
  readonly pid: number;
  /** Ends it: helpers still running are sent SIGTERM (SIGKILL after the grace), and its folder is removed. */
  stop(): Promise<void>;
}

/**
 * Starts a spawner, a process of its own; `{ problem }` when it cannot start (the caller then spawns directly).
 * `onExit` hears of an end that stop() did not ask for.
 */
export async function startSpawner(opts: { graceMs?: number; onExit?: (why: string) => void } = {}): Promise<Spawner | { problem: string }> {
  const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  let dir: string | undefined;
  try {
    dir = await mkdtemp(join(tmpdir(), 'lifeboat-spawner-'));
    const socketPath = join(dir, 'spawner.sock');
    const program = fileURLToPath(new URL('./spawner-process.js', import.meta.url));
    const child = spawn(process.execPath, [program, socketPath, String(graceMs)], { stdio: ['pipe', 'pipe', 'inherit'] });
    // 'close' also comes after an 'error' (a spawn that failed), where 'exit' does not.
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    let stopping = false;
    const ready = await new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(() => resolve('it did not start within 10 s'), 10_000);
      const done = (why: string | undefined): void => {
        clearTimeout(timer);
        resolve(why);
      };
      child.stdout.setEncoding('utf8');
      child.stdout.once('data', (text: string) => done(text.startsWith('ready') ? undefined : `it said ${JSON.stringify(text)}`));
      child.once('error', (err) => done(err.message));
      child.once('exit', (code, signal) => {
        done(`it exited (${signal ?? code})`);
        if (!stopping) opts.onExit?.(`the spawner process exited (${signal ?? code})`);
      });
    });
    const folder = dir;
    const stop = async (): Promise<void> => {
      stopping = true;
      child.stdin.end();
      // It ends its helpers first, within their grace.
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs + 5000);
      await closed;
      clearTimeout(timer);
      await rm(folder, { recursive: true, force: true });
    };
    if (ready !== undefined) {
      await stop();
      return { problem: ready };
    }
    // The spawner must not keep the server's event loop alive, nor its pipes.
    child.unref();
    child.stdout.destroy();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    return { socketPath, pid: child.pid!, stop };
  } catch (err) {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    return { problem: err instanceof Error ? err.message : String(err) };
  }
}
