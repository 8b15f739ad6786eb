import { randomInt } from 'node:crypto';
import type { Socket } from 'node:net';
import { LifeboatError } from '../core/errors.js';
import { connectUnixSocket } from '../qemu/unix-socket.js';

/**
 * A client of the QEMU guest agent over the unix socket of its chardev
 * (`-chardev socket,server=on,wait=off` + `virtserialport name=org.qemu.guest_agent.0`).
 *
 * The protocol is JSON objects one after another, one request answered at a
 * time, with no ids on the answers. The stream can hold stale answers of an
 * earlier client, and a request written while no agent has the port open in
 * the guest is lost; so a client first syncs: it sends 0xFF (which resets the
 * agent's JSON parser), `guest-sync-delimited` with a random id, and drops
 * everything until the answer carrying that id (the agent puts 0xFF before
 * it). The chardev serves one client at a time: close the client when done.
 */
/** The longest answer kept: guest-ping and guest-sync answers are a few bytes; guest-get-osinfo and the like a few KiB. */
const MAX_LINE = 1 << 20;
/** Answers waiting to be read: a client asks one thing at a time, so more is a flood. */
const MAX_QUEUED = 1000;

export class GuestAgentClient {
  private buffered = '';
  private readonly messages: Record<string, unknown>[] = [];
  private waiter: (() => void) | undefined;
  private closedError: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => this.fail(new LifeboatError('LFB_ERR_VM', `the guest agent connection ${path} closed`)));
    socket.on('error', (e) => this.fail(new LifeboatError('LFB_ERR_VM', `guest agent ${path}: ${e.message}`)));
  }

  /** Connects to the chardev's socket (QEMU accepts as soon as it runs, whether or not an agent runs in the guest). */
  static async connect(path: string, timeoutMs = 5_000): Promise<GuestAgentClient> {
    const socket = await connectUnixSocket(path, timeoutMs, 'the guest agent socket');
    return new GuestAgentClient(socket, path);
  }

  /**
   * Syncs the stream (see the class comment), sending the sync again every
   * `resendMs` with a new id: a request written while no agent had the port
   * open may be lost. Requests QEMU held back instead all get answered once the
   * agent starts; only the answer to the latest id ends the sync, so the
   * earlier ones are behind it. Fails when no answer comes within `timeoutMs`.
   */
  async sync(timeoutMs = 2_000, resendMs = 1_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const id = randomInt(1, 2 ** 31);
      this.write(`\xff${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`);
      const resendAt = Math.min(deadline, performance.now() + resendMs);
      for (;;) {
        const msg = await this.next(resendAt, 'guest-sync-delimited', resendAt < deadline);
        if (msg === undefined) break;
        if (msg['return'] === id) return;
      }
    }
  }

  /** Runs one command (after a sync) and gives its `return` value; an `error` answer fails with the agent's words. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    this.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    const msg = await this.next(performance.now() + timeoutMs, command);
    const err = msg['error'] as { class?: string; desc?: string } | undefined;
    if (err) throw new LifeboatError('LFB_ERR_VM', `the guest agent refused ${command}: ${err.desc ?? err.class ?? 'error'}`);
    return msg['return'] as T;
  }

  close(): void {
    this.socket.destroy();
  }

  private write(text: string): void {
    if (this.closedError) throw this.closedError;
    this.socket.write(Buffer.from(text, 'latin1'));
  }

  private onData(chunk: string): void {
    if (this.closedError) return;
    // 0xFF only ever delimits (it is never valid in JSON text): drop it.
    this.buffered += chunk.replaceAll('\xff', '');
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line === '') continue;
      try {
        const msg = JSON.parse(Buffer.from(line, 'latin1').toString('utf8')) as unknown;
        if (msg !== null && typeof msg === 'object' && !Array.isArray(msg)) this.messages.push(msg as Record<string, unknown>);
      } catch {
        // A torn line from an earlier client's conversation: the sync skips past it.
      }
    }
    // A broken or hostile guest may write without end: what is kept stays bounded, and such an agent is given up on.
    if (this.buffered.length > MAX_LINE) return this.abandon(`the guest agent sent more than ${MAX_LINE / (1 << 20)} MiB without a line end`);
    if (this.messages.length > MAX_QUEUED) return this.abandon(`the guest agent sent more than ${MAX_QUEUED} messages unasked`);
    if (this.messages.length > 0) this.waiter?.();
  }

  private abandon(why: string): void {
    this.buffered = '';
    this.messages.length = 0;
    this.fail(new LifeboatError('LFB_ERR_VM', `${why} on ${this.path}`));
    this.socket.destroy();
  }

  private fail(e: Error): void {
    this.closedError ??= e;
    this.waiter?.();
  }

  private async next(deadline: number, what: string, quiet: true): Promise<Record<string, unknown> | undefined>;
  private async next(deadline: number, what: string, quiet?: boolean): Promise<Record<string, unknown>>;
  /** The next message; at the deadline, undefined when `quiet`, else an error. */
  private async next(deadline: number, what: string, quiet = false): Promise<Record<string, unknown> | undefined> {
    for (;;) {
      const msg = this.messages.shift();
      if (msg) return msg;
      if (this.closedError) throw this.closedError;
      const left = deadline - performance.now();
      if (left <= 0) {
        if (quiet) return undefined;
        throw new LifeboatError('LFB_ERR_VM', `the guest agent did not answer ${what} within the deadline`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.waiter = done;
      });
      this.waiter = undefined;
    }
  }
}

/**
 * Connects, syncs and sends `guest-ping` within `timeoutMs`; resolves when the
 * agent answered, throws with the reason otherwise (also when `signal` stops it:
 * the connection is closed at once, freeing the chardev for another client).
 */
export async function guestPing(path: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  const c = await GuestAgentClient.connect(path, Math.max(1, timeoutMs));
  const onAbort = (): void => c.close();
  if (signal?.aborted) c.close();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await c.sync(Math.max(1, deadline - performance.now()));
    await c.execute('guest-ping', undefined, Math.max(1, deadline - performance.now()));
  } finally {
    signal?.removeEventListener('abort', onAbort);
    c.close();
  }
}
