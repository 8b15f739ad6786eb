import { sha256 } from './checksum.js';
import { PAGE, SLOT_MAGIC } from './constants.js';

/**
 * A commit slot. There are two (pages 1 and 2); a commit writes the slot the
 * newest valid one is not in, with generation + 1. The slot with the highest
 * generation and a valid checksum names the file's committed root. A slot
 * write is the single atomic step of every commit; the root and the data it
 * references are fsynced before it.
 */
export interface Slot {
  readonly generation: number;
  readonly rootOffset: number;
  readonly rootLength: number;
  /** End of everything the committed root references (data and the root itself). */
  readonly fileEnd: number;
  readonly rootDigest: Buffer;
}

const SLOT_BYTES = 104;

export function encodeSlot(s: Slot): Buffer {
  const b = Buffer.alloc(PAGE);
  SLOT_MAGIC.copy(b, 0);
  b.writeBigUInt64LE(BigInt(s.generation), 8);
  b.writeBigUInt64LE(BigInt(s.rootOffset), 16);
  b.writeUInt32LE(s.rootLength, 24);
  b.writeBigUInt64LE(BigInt(s.fileEnd), 32);
  s.rootDigest.copy(b, 40);
  sha256(b.subarray(0, 72)).copy(b, 72);
  return b;
}

/** Returns the slot, or undefined if the page holds no valid slot (never written, torn, damaged). */
export function decodeSlot(b: Buffer): Slot | undefined {
  if (b.length < SLOT_BYTES || !b.subarray(0, 8).equals(SLOT_MAGIC)) return undefined;
  if (!sha256(b.subarray(0, 72)).equals(b.subarray(72, 104))) return undefined;
  return {
    generation: Number(b.readBigUInt64LE(8)),
    rootOffset: Number(b.readBigUInt64LE(16)),
    rootLength: b.readUInt32LE(24),
    fileEnd: Number(b.readBigUInt64LE(32)),
    rootDigest: Buffer.from(b.subarray(40, 72)),
  };
}

/** Picks the committed slot: the valid one with the highest generation. */
export function pickSlot(a: Slot | undefined, b: Slot | undefined): { slot: Slot; index: 0 | 1 } | undefined {
  if (a && (!b || a.generation > b.generation)) return { slot: a, index: 0 };
  if (b) return { slot: b, index: 1 };
  return undefined;
}
