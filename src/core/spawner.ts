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
import { processRunning } from './process-alive.js';

/**
 * A helper process: emits 'stderr' (text), then 'exit' (code, signal) once
 * it ended and its standard error was read to the end; or 'error' (Error)
 * when it could not be started.
 */
export class HelperProcess extends EventEmitter {
  /** Known once it started (through a spawner, a moment after spawnHelper returns). */
  pid: number | undefined;
  /** How a signal reaches it: through the spawner, or to the child directly. */
  signaller: (signal: NodeJS.Signals) => void = () => undefined;
  private ended = false;

  constructor() {
    super();
    this.once('exit', () => (this.ended = true));
    this.once('error', () => (this.ended = true));
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
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  helper.signaller = (s) => child.kill(s);
  helper.pid = child.pid;
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => helper.emit('stderr', text));
  child.on('error', (err) => helper.emit('error', err));
  // 'close' rather than 'exit': its standard error is read to the end first, as through a spawner.
  child.on('close', (code, signal) => helper.emit('exit', code, signal));
  return helper;
}

type SpawnerMessage =
  | { id: number; pid: number }
  | { id: number; stderr: string }
  | { id: number; error: string; code: string | null }
  | { id: number; exit: [number | null, NodeJS.Signals | null] };

interface Asked {
  readonly helper: HelperProcess;
  readonly cmd: string;
  readonly args: readonly string[];
}

/** This thread's connection to the spawner: one socket, requests and answers matched by id. */
class SpawnerClient {
  broken = false;
  private socket: Socket | undefined;
  private connected = false;
  private nextId = 1;
  private readonly live = new Map<number, Asked>();
  private buffered = '';

  constructor(private readonly path: string) {}

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
    socket.setEncoding('utf8');
    socket.once('connect', () => (this.connected = true));
    socket.on('data', (text: string) => {
      this.buffered += text;
      for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        this.answer(JSON.parse(line) as SpawnerMessage);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.lost());
    return socket;
  }

  private answer(m: SpawnerMessage): void {
    const helper = this.live.get(m.id)?.helper;
    if (helper === undefined) return;
    if ('pid' in m) helper.pid = m.pid;
    else if ('stderr' in m) helper.emit('stderr', m.stderr);
    else {
      this.live.delete(m.id);
      if (this.live.size === 0) this.socket?.unref();
      if ('exit' in m) helper.emit('exit', m.exit[0], m.exit[1]);
      else helper.emit('error', Object.assign(new Error(m.error), m.code === null ? {} : { code: m.code }));
    }
  }

  /**
   * The spawner cannot be reached, or went away; later helpers are spawned directly. Never reached: nothing was
   * started, so each helper asked of it is started directly now. Gone: the helpers it started are killed by pid,
   * and ones it had not started are reported as not started (whether it did is not known).
   */
  private lost(): void {
    this.broken = true;
    const asked = [...this.live.values()];
    this.live.clear();
    for (const { helper, cmd, args } of asked) {
      if (!this.connected) spawnDirectly(cmd, args, helper);
      else if (helper.pid !== undefined) void endOrphan(helper, helper.pid);
      else helper.emit('error', new Error('the spawner process ended before it said it had started the helper'));
    }
  }
}

/**
 * A helper whose spawner went away: sent SIGTERM (a storage daemon stores its bitmaps then), SIGKILL if it is
 * still there 20 s later, and its exit reported once it is gone (so what it held, an image's lock, is free).
 */
async function endOrphan(helper: HelperProcess, pid: number): Promise<void> {
  const signal = (s: NodeJS.Signals): void => {
    try {
      process.kill(pid, s);
    } catch {
      // Already gone.
    }
  };
  helper.signaller = signal;
  signal('SIGTERM');
  const started = performance.now();
  while (processRunning(pid)) {
    if (performance.now() - started > 20_000) signal('SIGKILL');
    await new Promise((r) => setTimeout(r, 20));
  }
  helper.emit('exit', null, 'SIGTERM');
}

let client: SpawnerClient | undefined;

/** This thread starts its helpers through the spawner at `socketPath` (undefined: directly). */
export function useSpawner(socketPath: string | undefined): void {
  client = socketPath === undefined ? undefined : new SpawnerClient(socketPath);
}

/** A started spawner: its socket (for useSpawner in each thread) and how to end it. */
export interface Spawner {
  readonly socketPath: string;
  readonly pid: number;
  /** Ends it: helpers still running are sent SIGTERM. */
  stop(): Promise<void>;
}

/** Starts a spawner (the server, while it is still small); undefined, with the reason, if it cannot start. */
export async function startSpawner(): Promise<Spawner | { problem: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'lifeboat-spawner-'));
  const socketPath = join(dir, 'spawner.sock');
  const program = fileURLToPath(new URL('./spawner-process.js', import.meta.url));
  const child = spawn(process.execPath, [program, socketPath], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<string | undefined>((resolve) => {
    const timer = setTimeout(() => resolve('it did not start within 10 s'), 10_000);
    child.stdout.setEncoding('utf8');
    child.stdout.once('data', (text: string) => {
      clearTimeout(timer);
      resolve(text.startsWith('ready') ? undefined : `it said ${JSON.stringify(text)}`);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve(err.message);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(`it exited (${signal ?? code})`);
    });
  });
  const stop = async (): Promise<void> => {
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    await rm(dir, { recursive: true, force: true });
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
}
