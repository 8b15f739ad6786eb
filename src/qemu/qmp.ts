import type { Socket } from 'node:net';
import { LifeboatError } from '../core/errors.js';
import { connectUnixSocket } from './unix-socket.js';

export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
}

/**
 * A QEMU Machine Protocol client over a unix socket: JSON lines, a greeting,
 * capabilities negotiation, then commands matched to replies by id and
 * asynchronous events delivered to listeners.
 */
export class QmpClient {
  private buffered = '';
  private nextId = 1;
  private readonly waiting = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; command: string }>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private closedError: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => this.fail(new LifeboatError('LFB_ERR_VM', 'the QEMU monitor connection closed')));
    socket.on('error', (e) => this.fail(new LifeboatError('LFB_ERR_VM', `QEMU monitor: ${e.message}`)));
  }

  /** Connects, waits for the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const socket = await connectUnixSocket(path, timeoutMs, 'the QEMU monitor');
    const c = new QmpClient(socket);
    try {
      await c.greeting(path, timeoutMs);
      await c.execute('qmp_capabilities');
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  }

  private greeted: (() => void) | undefined;
  /**
   * QEMU greets a client once its main loop accepts the connection. A monitor
   * that already serves another client accepts the connection into the
   * socket's backlog and never greets: hence the deadline.
   */
  private greeting(path: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new LifeboatError(
              'LFB_ERR_VM',
              `QEMU monitor ${path} accepted the connection but sent no greeting within ${timeoutMs} ms (is another client connected to it?)`,
            ),
          ),
        timeoutMs,
      );
      this.greeted = () => {
        clearTimeout(timer);
        resolve();
      };
      this.greetingFailed = (e) => {
        clearTimeout(timer);
        reject(e);
      };
    });
  }
  private greetingFailed: ((e: Error) => void) | undefined;

  private onData(chunk: string): void {
    this.buffered += chunk;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line === '') continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if ('QMP' in msg) this.greeted?.();
      else if (typeof msg['event'] === 'string') for (const l of this.listeners) l(msg as unknown as QmpEvent);
      else if (typeof msg['id'] === 'string') {
        const w = this.waiting.get(msg['id']);
        if (!w) continue;
        this.waiting.delete(msg['id']);
        const err = msg['error'] as { class?: string; desc?: string } | undefined;
        if (err) w.reject(new LifeboatError('LFB_ERR_VM', `QEMU refused ${w.command}: ${err.desc ?? err.class ?? 'error'}`));
        else w.resolve(msg['return']);
      }
    }
  }

  private fail(e: Error): void {
    this.closedError ??= e;
    this.greetingFailed?.(e);
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
  }

  /**
   * Runs one command. QEMU answers monitor commands from its main loop, in
   * milliseconds even for block jobs (they report through events); one that
   * gets no answer within `timeoutMs` fails instead of holding its caller.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 60_000): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = `lfb-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new LifeboatError('LFB_ERR_VM', `QEMU did not answer ${command} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
        command,
      });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /** Calls `f` for every event until the returned function is called. */
  onEvent(f: (e: QmpEvent) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  close(): void {
    this.socket.destroy();
  }
}
