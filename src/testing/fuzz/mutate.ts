/**
 * Fuzzing support (tests and `npm run fuzz` only): the random source and the
 * mutators. A mutation starts from a valid message and breaks it the way a
 * hostile or buggy peer would: flipped bits, replaced bytes, cut short, grown,
 * a length field set to 0, 1, 2^31-1 or 2^32-1, another message spliced in.
 */
import { prng } from '../prng.js';

/** A deterministic random source with the helpers every generator needs. */
export class Rand {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = prng(seed);
  }

  /** In [0, 1). */
  float(): number {
    return this.next();
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  u32(): number {
    return (this.next() * 4294967296) >>> 0;
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** A valid message and where its length fields are (so "huge length" mutations hit real fields). */
export interface Sample {
  readonly data: Buffer;
  /** Byte offsets of 4-byte big-endian length fields. */
  readonly lengths: readonly number[];
  /** Leading bytes a mutation leaves alone most of the time (e.g. the procedure number the harness prefixes). */
  readonly keep?: number;
  /** XDR is 4-byte aligned: word mutations prefer aligned offsets. */
  readonly aligned?: boolean;
}

/** Values that break length and count checks: empty, tiny, unaligned, at and past 2^16, 2^31, 2^32. */
export const INTERESTING_U32 = [
  0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 255, 256, 1023, 1024, 1025, 4095, 4096, 65535, 65536, 65537, 0x7fff_ffff, 0x8000_0000, 0x8000_0001, 0xffff_fffe, 0xffff_ffff,
] as const;
/** For 64-bit fields: file systems' limits (ext4's 16 TiB, FSINFO's 2^50), JavaScript's 2^53, the sign bit. */
const INTERESTING_U64 = [
  0n,
  1n,
  2n ** 32n,
  2n ** 44n,
  2n ** 50n - 1n,
  2n ** 50n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 63n - 1n,
  2n ** 63n,
  2n ** 64n - 1n,
] as const;
const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x2f /* '/' */, 0x2e /* '.' */] as const;

/** Largest input a mutation may produce: inputs stay small so a million of them run in minutes. */
const MAX_INPUT = 256 * 1024;

type Mutator = (b: Buffer, s: Sample, r: Rand, other: () => Sample) => Buffer;

function wordOffset(b: Buffer, s: Sample, r: Rand, size: number): number | undefined {
  const lo = Math.min(s.keep ?? 0, b.length);
  if (b.length - lo < size) return undefined;
  const at = lo + r.int(b.length - lo - size + 1);
  return s.aligned ? at - ((at - lo) % 4) : at;
}

const flipBits: Mutator = (b, s, r) => {
  const out = Buffer.from(b);
  const lo = Math.min(s.keep ?? 0, out.length);
  if (out.length === lo) return out;
  for (let n = r.range(1, 8); n > 0; n--) {
    const at = lo + r.int(out.length - lo);
    out[at] = out[at]! ^ (1 << r.int(8));
  }
  return out;
};

const replaceBytes: Mutator = (b, s, r) => {
  const out = Buffer.from(b);
  const lo = Math.min(s.keep ?? 0, out.length);
  if (out.length === lo) return out;
  for (let n = r.range(1, 4); n > 0; n--) out[lo + r.int(out.length - lo)] = r.chance(0.5) ? r.pick(INTERESTING_BYTES) : r.int(256);
  return out;
};

const truncate: Mutator = (b, s, r) => {
  const lo = Math.min(s.keep ?? 0, b.length);
  let cut = lo + r.int(b.length - lo + 1);
  if (s.aligned && r.chance(0.5)) cut -= (cut - lo) % 4;
  return b.subarray(0, cut);
};

const extend: Mutator = (b, _s, r) => {
  const n = r.chance(0.8) ? r.range(1, 64) : r.range(65, 8192);
  const tail = r.chance(0.3) ? Buffer.alloc(n, r.chance(0.5) ? 0 : 0xff) : r.bytes(n);
  return Buffer.concat([b, tail]);
};

/** A length field (or, without hints, any aligned word) set to an interesting value or nudged by one. */
const setLength: Mutator = (b, s, r) => {
  const fields = s.lengths.filter((o) => o + 4 <= b.length);
  const at = fields.length > 0 && r.chance(0.85) ? r.pick(fields) : wordOffset(b, s, r, 4);
  if (at === undefined) return b;
  const out = Buffer.from(b);
  const old = out.readUInt32BE(at);
  const v = r.chance(0.7) ? r.pick(INTERESTING_U32) : (old + r.pick([-4, -1, 1, 4])) >>> 0;
  out.writeUInt32BE(v, at);
  return out;
};

/** Any field: enums, booleans, flavors, offsets. */
const setWord: Mutator = (b, s, r) => {
  const wide = r.chance(0.25);
  const at = wordOffset(b, s, r, wide ? 8 : 4);
  if (at === undefined) return b;
  const out = Buffer.from(b);
  if (wide) out.writeBigUInt64BE(r.pick(INTERESTING_U64), at);
  else out.writeUInt32BE(r.chance(0.6) ? r.pick(INTERESTING_U32) : r.u32(), at);
  return out;
};

/** The head of this message and the tail of another (of the same target). */
const splice: Mutator = (b, s, r, other) => {
  const o = other().data;
  const lo = Math.min(s.keep ?? 0, b.length);
  const cut = lo + r.int(b.length - lo + 1);
  const from = Math.min(Math.min(s.keep ?? 0, o.length) + r.int(o.length + 1), o.length);
  return Buffer.concat([b.subarray(0, cut), o.subarray(from)]);
};

/** A chunk repeated, removed or moved: fields shifted out of place. */
const reshape: Mutator = (b, s, r) => {
  const lo = Math.min(s.keep ?? 0, b.length);
  if (b.length - lo < 2) return b;
  const start = lo + r.int(b.length - lo);
  const len = r.range(1, Math.min(64, b.length - start));
  const chunk = b.subarray(start, start + len);
  switch (r.int(3)) {
    case 0:
      return Buffer.concat([b.subarray(0, start), chunk, chunk, b.subarray(start + len)]);
    case 1:
      return Buffer.concat([b.subarray(0, start), b.subarray(start + len)]);
    default: {
      const rest = Buffer.concat([b.subarray(0, start), b.subarray(start + len)]);
      const to = lo + r.int(rest.length - lo + 1);
      return Buffer.concat([rest.subarray(0, to), chunk, rest.subarray(to)]);
    }
  }
};

const MUTATORS: readonly [Mutator, number][] = [
  [flipBits, 3],
  [replaceBytes, 2],
  [truncate, 2],
  [extend, 1],
  [setLength, 3],
  [setWord, 3],
  [splice, 1],
  [reshape, 1],
];
const TOTAL_WEIGHT = MUTATORS.reduce((n, [, w]) => n + w, 0);

function pickMutator(r: Rand): Mutator {
  let x = r.int(TOTAL_WEIGHT);
  for (const [m, w] of MUTATORS) {
    if (x < w) return m;
    x -= w;
  }
  return MUTATORS[0]![0];
}

/** One to four stacked mutations of a valid sample; `other` supplies a second sample for splicing. */
export function mutate(s: Sample, r: Rand, other: () => Sample): Buffer {
  let b = s.data;
  for (let n = r.chance(0.6) ? 1 : r.range(2, 4); n > 0; n--) b = pickMutator(r)(b, s, r, other);
  return b.length > MAX_INPUT ? b.subarray(0, MAX_INPUT) : b;
}

/** FNV-1a: a seed derived from the input itself, so anything random about running it replays from its bytes alone. */
export function inputSeed(b: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h >>> 0;
}

/**
 * Writes `input` to a connection in pieces where the input's hash says (half
 * the time whole, else 1 to 64 bytes at a time), so headers arrive split
 * across reads too, the same way each time the input is replayed.
 */
export function writeInPieces(to: { write(piece: Buffer): unknown }, input: Buffer): void {
  const split = new Rand(inputSeed(input));
  for (let at = 0; at < input.length;) {
    const n = split.chance(0.5) ? input.length : split.range(1, 64);
    to.write(input.subarray(at, at + n));
    at += n;
  }
}
