/**
 * What a session disk of the load benchmark must read as: the backup's
 * bytes, except where clients wrote. Writers write whole 4 KiB chunks, each
 * write filled with one byte value, and record when the write was sent and
 * when it was acknowledged (as ticks of one counter, so order is exact).
 * A read that started at tick t0 and got its bytes at tick t1 may see, in
 * each chunk, the last version acknowledged by t0 (or the backup's bytes if
 * there is none) or any later version sent before t1, and nothing else.
 */
import { prng } from '../src/testing/prng.js';

export const CHUNK = 4096;
const MiB = 1024 * 1024;

let clock = 0;
/** The next tick: every send, acknowledgement, read start and read arrival takes one. */
export const tick = (): number => ++clock;

interface Version {
  readonly fill: number;
  readonly sent: number;
  /** Tick of the acknowledgement; undefined while in flight or if the write failed (then it may or may not be there, forever). */
  acked: number | undefined;
}

/** Buffers of one repeated byte, for fast comparison of whole chunks. */
const filled: Buffer[] = Array.from({ length: 256 }, (_, b) => Buffer.alloc(CHUNK, b));

export class DiskModel {
  private readonly versions = new Map<number, Version[]>();
  private readonly readsFrom = new Map<number, number>();

  constructor(readonly base: Buffer) {}

  get size(): number {
    return this.base.length;
  }

  /** A write of `length` bytes of `fill` at `offset` (both multiples of CHUNK) is being sent. */
  send(offset: number, length: number, fill: number): Version[] {
    if (offset % CHUNK !== 0 || length % CHUNK !== 0) throw new RangeError('load writes cover whole 4 KiB chunks');
    const sent = tick();
    const out: Version[] = [];
    for (let c = offset / CHUNK; c < (offset + length) / CHUNK; c++) {
      const v: Version = { fill, sent, acked: undefined };
      const list = this.versions.get(c);
      if (list) {
        this.prune(list);
        list.push(v);
      } else this.versions.set(c, [v]);
      out.push(v);
    }
    return out;
  }

  acknowledged(vs: readonly Version[]): void {
    const t = tick();
    for (const v of vs) v.acked = t;
  }

  /** The fill a chunk must hold now for a reader that is also its only writer, or undefined if that is not one value. */
  settledFill(offset: number): number | undefined {
    const last = this.versions.get(Math.floor(offset / CHUNK))?.at(-1);
    return last?.acked === undefined ? undefined : last.fill;
  }

  /** A read starts: versions it may see are kept until it ends. */
  readStart(): number {
    const t0 = tick();
    this.readsFrom.set(t0, (this.readsFrom.get(t0) ?? 0) + 1);
    return t0;
  }

  readEnd(t0: number): void {
    const n = (this.readsFrom.get(t0) ?? 1) - 1;
    if (n === 0) this.readsFrom.delete(t0);
    else this.readsFrom.set(t0, n);
  }

  /**
   * Checks `data`, read at `offset` by a read that started at `t0` and
   * received these bytes now; returns what is wrong, or undefined.
   */
  check(offset: number, data: Buffer, t0: number): string | undefined {
    const t1 = tick();
    const end = offset + data.length;
    let pos = offset;
    while (pos < end) {
      // A run of never-written chunks compares with the backup in one go.
      let to = Math.min(end, (Math.floor(pos / CHUNK) + 1) * CHUNK);
      const list = this.versions.get(Math.floor(pos / CHUNK));
      if (!list) {
        while (to < end && !this.versions.has(to / CHUNK)) to = Math.min(end, to + CHUNK);
        if (!data.subarray(pos - offset, to - offset).equals(this.base.subarray(pos, to))) return this.describe(data, offset, pos, to, 'the backup');
      } else {
        const wrong = this.checkChunk(list, data.subarray(pos - offset, to - offset), pos, t0, t1);
        if (wrong) return wrong;
      }
      pos = to;
    }
    return undefined;
  }

  private checkChunk(list: readonly Version[], got: Buffer, at: number, t0: number, t1: number): string | undefined {
    let committed = -1;
    for (let i = 0; i < list.length; i++) if (list[i]!.acked !== undefined && list[i]!.acked! <= t0) committed = i;
    const fills: number[] = [];
    for (let i = Math.max(0, committed); i < list.length; i++) if (i === committed || list[i]!.sent < t1) fills.push(list[i]!.fill);
    const baseAllowed = committed < 0;
    if (fills.length === 1 && !baseAllowed && got.equals(filled[fills[0]!]!.subarray(0, got.length))) return undefined;
    for (let i = 0; i < got.length; i++) {
      const b = got[i]!;
      if (!fills.includes(b) && !(baseAllowed && b === this.base[at + i])) {
        return `byte ${at + i} is 0x${b.toString(16)}; it may be ${fills.map((f) => `0x${f.toString(16)}`).join(', ') || 'nothing written'}${baseAllowed ? ` or the backup's 0x${this.base[at + i]!.toString(16)}` : ''}`;
      }
    }
    return undefined;
  }

  private describe(data: Buffer, offset: number, from: number, to: number, what: string): string {
    let at = from;
    while (at < to && data[at - offset] === this.base[at]) at++;
    return `byte ${at} is 0x${data[at - offset]!.toString(16)}, ${what} has 0x${this.base[at]!.toString(16)}`;
  }

  /** Drops versions no running or later read can see: those before the last one acknowledged before every running read began. */
  private prune(list: Version[]): void {
    if (list.length < 4) return;
    let oldest = Infinity;
    for (const t of this.readsFrom.keys()) oldest = Math.min(oldest, t);
    let keepFrom = 0;
    for (let i = 0; i < list.length; i++) if (list[i]!.acked !== undefined && list[i]!.acked! <= Math.min(oldest, clock)) keepFrom = i;
    if (keepFrom > 0) list.splice(0, keepFrom);
  }
}

/**
 * The benchmark's disk: per MiB, random bytes (some with low-entropy
 * words, like real data), text-like repeats, or zeros, from a seeded PRNG.
 */
export function loadDiskImage(sizeMiB: number, seed = 64): Buffer {
  const rand = prng(seed);
  const out = Buffer.alloc(sizeMiB * MiB);
  for (let m = 0; m < sizeMiB; m++) {
    const at = m * MiB;
    if (m % 8 === 7) continue; // a hole
    if (m % 3 === 0) {
      const phrase = Buffer.from(Array.from({ length: 61 }, () => 0x20 + Math.floor(rand() * 95)));
      for (let i = 0; i < MiB; i += phrase.length) phrase.copy(out, at + i, 0, Math.min(phrase.length, MiB - i));
      continue;
    }
    for (let i = 0; i < MiB; i += 4) {
      const mask = rand() < 0.3 ? 0x0f0f0f0f : 0xffffffff;
      out.writeUInt32LE((Math.floor(rand() * 2 ** 32) & mask) >>> 0, at + i);
    }
  }
  return out;
}
