import type { Socket } from 'node:net';

/**
 * Awaitable exact-size reads from a socket, with backpressure: when more
 * than `highWater` bytes are buffered the socket stops being read.
 */
export class SocketReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiting: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private closed: Error | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly highWater = 64 * 1024 * 1024,
  ) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.have += d.length;
      if (this.have > this.highWater) socket.pause();
      this.settle();
    });
    const end = (): void => {
      this.closed ??= new Error('connection closed');
      this.settle();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  private settle(): void {
    const w = this.waiting;
    if (!w) return;
    if (this.have >= w.n) {
      this.waiting = undefined;
      w.resolve(this.take(w.n));
    } else if (this.closed) {
      this.waiting = undefined;
      w.reject(this.closed);
    }
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.have -= n;
    if (this.have <= this.highWater && this.socket.isPaused()) this.socket.resume();
    return out;
  }

  read(n: number): Promise<Buffer> {
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    if (this.have >= n) return Promise.resolve(this.take(n));
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.waiting = { n, resolve, reject };
    });
  }
}
