/**
 * Server-Sent Events: one event stream per request, written straight to the
 * socket (fastify's reply is hijacked: nothing is serialized or buffered).
 * A comment line at every keepalive keeps proxies and browsers from closing
 * an idle stream; when the client goes, the stream's cleanups run at once.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { LifeboatError } from '../../core/errors.js';

export interface EventStream {
  send(event: string, data: unknown): void;
  /** Runs when the stream ends, whoever ends it. */
  onClose(cleanup: () => void): void;
  end(): void;
  readonly closed: boolean;
}

/** Streams that are open, so closing the server ends them (an open stream would keep it waiting). */
export class EventStreams {
  private readonly open = new Set<EventStream>();

  /** At most `max` streams at once: each holds a socket and polls the catalog. */
  constructor(private readonly max: number) {}

  start(request: FastifyRequest, reply: FastifyReply, keepaliveMs: number): EventStream {
    if (this.open.size >= this.max)
      throw new LifeboatError('LFB_ERR_RATE_LIMITED', `this server has ${this.open.size} event streams open, its most; close one or try again later`, {
        details: { retryAfterSeconds: 5 },
      });
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-store',
      connection: 'keep-alive',
      // nginx buffers responses unless told not to.
      'x-accel-buffering': 'no',
    });
    res.write(': stream open\n\n');
    const cleanups: (() => void)[] = [];
    let closed = false;
    const close = (): void => {
      if (closed) return;
      closed = true;
      clearInterval(keepalive);
      this.open.delete(stream);
      for (const c of cleanups.splice(0)) c();
      if (!res.writableEnded) res.end();
    };
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), keepaliveMs);
    keepalive.unref();
    request.raw.socket.on('close', close);
    res.on('close', close);
    const stream: EventStream = {
      send(event, data) {
        if (closed) return;
        // JSON has no raw newlines, so one data line carries the whole event.
        res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      },
      onClose(cleanup) {
        if (closed) cleanup();
        else cleanups.push(cleanup);
      },
      end: close,
      get closed() {
        return closed;
      },
    };
    this.open.add(stream);
    // A client that left while the request was authenticated or its run read has closed already, and a close
    // that came before these listeners is not heard again: such a stream ends now.
    if (request.raw.socket.destroyed || res.destroyed) close();
    return stream;
  }

  closeAll(): void {
    for (const s of [...this.open]) s.end();
  }
}

/**
 * Calls `tick` every `ms` until it returns true or the stream closes; one
 * tick at a time (a slow catalog never stacks calls). A tick that throws
 * ends the stream with an `error` event. The function returned ticks at once
 * instead of at the next interval (what the stream follows has changed); a
 * tick under way is followed by another.
 */
export function pollInto(stream: EventStream, ms: number, tick: () => Promise<boolean>): () => void {
  let timer: NodeJS.Timeout | undefined;
  let ticking = false;
  let again = false;
  stream.onClose(() => clearTimeout(timer));
  const run = async (): Promise<void> => {
    if (stream.closed) return;
    if (ticking) {
      again = true;
      return;
    }
    ticking = true;
    clearTimeout(timer);
    let done: boolean;
    try {
      done = await tick();
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown };
      stream.send('error', {
        code: typeof e.code === 'string' ? e.code : 'LFB_ERR_INTERNAL',
        message: typeof e.message === 'string' ? e.message : String(err),
      });
      done = true;
    }
    ticking = false;
    if (done) stream.end();
    else if (again) {
      again = false;
      void run();
    } else if (!stream.closed) timer = setTimeout(() => void run(), ms);
  };
  void run();
  return () => void run();
}
