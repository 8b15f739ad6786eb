import type { Socket } from 'node:net';

/** The peer closed the connection (or it broke) before the bytes a read waited for arrived. */
export class ConnectionClosed extends Error {
  constructor() {
    super('connection closed');
  }
}

/**
 * Awaitable exact-size reads from a socket, with backpressure: when more
 * than `highWater` bytes are buffered the socket stops being read (unless a
 * read waits for more than that), and the rest waits in the kernel.
 */
export class SocketReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiting: { n: number; into?: Buffer | undefined; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private closed: Error | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly highWater = 64 * 1024 * 1024,
  ) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.have += d.length;
      this.settle();
      this.flow();
    });
    const end = (): void => {
      this.closed ??= new ConnectionClosed();
      this.settle();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  /** Pauses the socket while enough is buffered, resumes it while a read is short of bytes. */
  private flow(): void {
    const starving = this.waiting !== undefined && this.have < this.waiting.n;
    if (this.have > this.highWater && !starving) {
      if (!this.socket.isPaused()) this.socket.pause();
    } else if (this.socket.isPaused()) this.socket.resume();
  }

  private settle(): void {
    const w = this.waiting;
    if (!w) return;
    if (this.have >= w.n) {
      this.waiting = undefined;
      w.resolve(this.take(w.n, w.into));
    } else if (this.closed) {
      this.waiting = undefined;
      w.reject(this.closed);
    }
  }

  private take(n: number, into?: Buffer): Buffer {
    // Copy only what is asked: a 16-byte header must not concatenate megabytes of buffered payload.
    const first = this.chunks[0]!;
    let out: Buffer;
    if (into === undefined && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = into ?? Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.have -= n;
    this.flow();
    return out;
  }

  /** Fills `into` with the next bytes, copied once from the socket's chunks. */
  readInto(into: Buffer): Promise<Buffer> {
    const n = into.length;
    if (n === 0) return Promise.resolve(into);
    if (this.have >= n) return Promise.resolve(this.take(n, into));
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.waiting = { n, into, resolve, reject };
      this.flow();
    });
  }

  read(n: number): Promise<Buffer> {
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    if (this.have >= n) return Promise.resolve(this.take(n));
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.waiting = { n, resolve, reject };
      this.flow();
    });
  }
}
