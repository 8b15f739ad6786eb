import type { Socket } from 'node:net';
import { batchWritesThisTick } from '../core/batched-writes.js';

/** Bytes handed to the socket and not yet taken by the kernel, at most (plus one piece). */
const WINDOW = 4 * 1024 * 1024;
/** Replies are handed over in pieces of at most this size. */
const PIECE = 1024 * 1024;

interface Reply {
  readonly pieces: Buffer[];
  readonly sent: () => void;
}

/**
 * The replies of one connection, in order, handed to the socket a window at a
 * time. Each piece the kernel takes is progress, so a client reading a large
 * reply slowly is told apart from one that has stopped reading (Node's own
 * socket timeout cannot: bytes the client sends count as activity there).
 */
export class ReplyQueue {
  private readonly queue: Reply[] = [];
  private handed = 0;
  private progressAt = 0;
  private readonly whenEmpty: (() => void)[] = [];

  constructor(private readonly socket: Socket) {}

  /** Queues one reply's buffers; `sent` is called once the kernel has all of them (or the socket is gone). */
  write(parts: Buffer[], sent: () => void): void {
    if (this.idle()) this.progressAt = performance.now();
    const pieces: Buffer[] = [];
    for (const p of parts) for (let at = 0; at < p.length; at += PIECE) pieces.push(p.subarray(at, Math.min(p.length, at + PIECE)));
    this.queue.push({ pieces, sent });
    this.pump();
  }

  /** How long replies have waited with no byte taken by the kernel; 0 when none wait. */
  stalledMs(now: number): number {
    return this.idle() ? 0 : now - this.progressAt;
  }

  /** Resolves once every queued reply is in the socket (so socket.end() sends them all), or the socket is gone. */
  allHanded(): Promise<void> {
    if (this.queue.length === 0 || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.whenEmpty.push(resolve));
  }

  private idle(): boolean {
    return this.queue.length === 0 && this.handed === 0;
  }

  private pump(): void {
    if (this.socket.destroyed) {
      // Nothing will be sent: the requests' holds are given back now.
      for (const r of this.queue.splice(0)) r.sent();
    }
    if (this.queue.length === 0) {
      for (const w of this.whenEmpty.splice(0)) w();
      return;
    }
    if (this.handed >= WINDOW) return;
    batchWritesThisTick(this.socket);
    while (this.queue.length > 0 && this.handed < WINDOW) {
      const reply = this.queue[0]!;
      const piece = reply.pieces.shift()!;
      const last = reply.pieces.length === 0;
      if (last) this.queue.shift();
      this.handed += piece.length;
      this.socket.write(piece, () => {
        this.handed -= piece.length;
        this.progressAt = performance.now();
        if (last) reply.sent();
        this.pump();
      });
    }
  }
}
