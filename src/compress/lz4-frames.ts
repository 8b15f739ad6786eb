import { createRequire } from 'node:module';
import { crc32 } from '@node-rs/crc32';
import type * as Lz4 from 'lz4-napi';

/**
 * An lz4 block stored in frames (docs/format.md): a small random read decodes
 * one frame, not the whole block, and each frame proves itself by a CRC-32 of
 * its content (@node-rs/crc32, several GB/s) instead of the block's SHA-256.
 *
 *   "LZ4F" | u32 LE content bytes per frame | frames
 *   frame: u32 LE stored length n | u32 LE CRC-32 of the frame's index (u32 LE) then its content | n bytes: lz4-napi's size-prefixed block
 *
 * The index is in the CRC so that frames swapped or copied within a block do
 * not pass for good ones.
 *
 * lz4 looks back at most 64 KiB, so frames of 64 KiB cost almost nothing in
 * size. An older lz4 block (one size-prefixed lz4-napi block) starts with its
 * length, at most 4 MiB; the magic read the same way is far above that, so
 * the two never mix up.
 */
export const LZ4_FRAME_BYTES = 64 * 1024;
const MAGIC = 0x46345a4c; // "LZ4F" read as u32 LE
const HEAD = 8;
const FRAME_HEAD = 8;
const MAX_FRAME_BYTES = 4 * 1024 * 1024;

const require = createRequire(import.meta.url);
// lz4 loads only for repositories that use it (loading it costs every thread ~10 ms).
let lz4Module: typeof Lz4 | undefined;
export const lz4 = (): typeof Lz4 => (lz4Module ??= require('lz4-napi') as typeof Lz4);

/** True when a stored lz4 block is in frames (this layout) rather than one size-prefixed block. */
export function isLz4Framed(stored: Uint8Array): boolean {
  return stored.length >= HEAD && Buffer.from(stored.buffer, stored.byteOffset, HEAD).readUInt32LE(0) === MAGIC;
}

/** Compresses a block as frames of LZ4_FRAME_BYTES. */
export function lz4Frames(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(HEAD);
  head.writeUInt32LE(MAGIC, 0);
  head.writeUInt32LE(LZ4_FRAME_BYTES, 4);
  parts.push(head);
  for (let at = 0; at < data.length; at += LZ4_FRAME_BYTES) {
    const content = data.subarray(at, at + LZ4_FRAME_BYTES);
    const packed = lz4().compressSync(content);
    const fh = Buffer.alloc(FRAME_HEAD);
    fh.writeUInt32LE(packed.length, 0);
    fh.writeUInt32LE(frameCrc(at / LZ4_FRAME_BYTES, content), 4);
    parts.push(fh, packed);
  }
  return Buffer.concat(parts);
}

/** The CRC-32 of frame `index`: over its index (u32 LE), then its content. */
function frameCrc(index: number, content: Uint8Array): number {
  const i = Buffer.alloc(4);
  i.writeUInt32LE(index, 0);
  return crc32(content, crc32(i));
}

/** One frame of a stored block: where it starts (its header) and ends, and the content it holds. */
interface Lz4Frame {
  readonly index: number;
  readonly offset: number;
  readonly end: number;
  readonly contentSize: number;
}

/** The frames of a framed block, checked against its length and its frame size; a string says what is wrong. */
function frameList(stored: Buffer, rawLength: number): { frames: Lz4Frame[]; frameBytes: number } | string {
  const frameBytes = stored.readUInt32LE(4);
  if (frameBytes < 1 || frameBytes > MAX_FRAME_BYTES) return `states frames of ${frameBytes} bytes`;
  const frames: Lz4Frame[] = [];
  let at = HEAD;
  let content = 0;
  while (at < stored.length) {
    if (at + FRAME_HEAD + 4 > stored.length) return `frame ${frames.length} is cut short`;
    const end = at + FRAME_HEAD + stored.readUInt32LE(at);
    const size = stored.readUInt32LE(at + FRAME_HEAD);
    if (end > stored.length) return `frame ${frames.length} runs past the block`;
    if (size === 0 || size !== Math.min(frameBytes, rawLength - content)) return `frame ${frames.length} holds ${size} bytes`;
    frames.push({ index: frames.length, offset: at, end, contentSize: size });
    content += size;
    at = end;
  }
  if (content !== rawLength) return `frames hold ${content} bytes, not ${rawLength}`;
  return { frames, frameBytes };
}

/** The content of one frame whose bytes are stored[offset, end), checked against its CRC-32; throws if damaged. */
function decodeFrame(stored: Buffer, { index, offset, end, contentSize }: Lz4Frame): Buffer {
  const packed = stored.subarray(offset + FRAME_HEAD, end);
  // lz4-napi allocates what the 4-byte size prefix says: check it first.
  if (packed.length < 4 || packed.readUInt32LE(0) !== contentSize) throw new Error('a frame states a wrong size');
  const out = lz4().uncompressSync(packed);
  if (out.length !== contentSize || frameCrc(index, out) !== stored.readUInt32LE(offset + 4)) throw new Error('a frame fails its CRC-32');
  return out;
}

/**
 * The whole block of a framed lz4 block, every frame checked; throws if damaged.
 * lz4-napi decodes only into a buffer of its own, so each frame is copied once
 * into the block: a memcpy, small beside decoding it.
 */
export function decompressLz4Frames(stored: Buffer, rawLength: number): Buffer {
  const list = frameList(stored, rawLength);
  if (typeof list === 'string') throw new Error(list);
  const out = Buffer.allocUnsafeSlow(rawLength);
  let pos = 0;
  for (const f of list.frames) {
    decodeFrame(stored, f).copy(out, pos);
    pos += f.contentSize;
  }
  return out;
}

/**
 * Decodes only the frames of a framed lz4 block that cover [from, to), each
 * checked by its CRC-32, and the block's frame boundaries (for later reads of
 * it to fetch only their frames) when its frames are LZ4_FRAME_BYTES.
 * Undefined when the block is not framed (it is then read whole).
 */
export function decodeLz4Range(
  stored: Buffer,
  rawLength: number,
  from: number,
  to: number,
): { data: Buffer; start: number; bounds?: Int32Array } | { problem: string } | undefined {
  if (!isLz4Framed(stored)) return undefined;
  const list = frameList(stored, rawLength);
  if (typeof list === 'string') return { problem: list };
  const first = Math.floor(from / list.frameBytes);
  const last = Math.min(list.frames.length - 1, Math.floor((to - 1) / list.frameBytes));
  if (from < 0 || first > last) return { problem: `asked for bytes ${from}..${to} of ${rawLength}` };
  const part = decodeSpan(stored, list.frames.slice(first, last + 1), first * list.frameBytes);
  if ('problem' in part) return part;
  if (list.frameBytes !== LZ4_FRAME_BYTES) return part;
  return { ...part, bounds: Int32Array.from([...list.frames.map((f) => f.offset), stored.length]) };
}

/**
 * Decodes frames [first, last] of a framed lz4 block of LZ4_FRAME_BYTES frames,
 * given only their stored bytes (found through boundaries from an earlier walk).
 */
export function decodeLz4Frames(span: Buffer, first: number, last: number, rawLength: number): { data: Buffer; start: number } | { problem: string } {
  const frames: Lz4Frame[] = [];
  let at = 0;
  for (let i = first; i <= last; i++) {
    if (at + FRAME_HEAD > span.length) return { problem: `frame ${i} is cut short` };
    const end = at + FRAME_HEAD + span.readUInt32LE(at);
    if (end > span.length) return { problem: `frame ${i} runs past its bounds` };
    const contentSize = Math.min(LZ4_FRAME_BYTES, rawLength - i * LZ4_FRAME_BYTES);
    if (contentSize <= 0) return { problem: `frame ${i} is past the block's end` };
    frames.push({ index: i, offset: at, end, contentSize });
    at = end;
  }
  if (at !== span.length) return { problem: 'frames do not fill their bounds' };
  return decodeSpan(span, frames, first * LZ4_FRAME_BYTES);
}

function decodeSpan(stored: Buffer, frames: readonly Lz4Frame[], start: number): { data: Buffer; start: number } | { problem: string } {
  try {
    if (frames.length === 1) return { data: decodeFrame(stored, frames[0]!), start };
    const data = Buffer.allocUnsafeSlow(frames.reduce((a, f) => a + f.contentSize, 0));
    let pos = 0;
    for (const f of frames) {
      decodeFrame(stored, f).copy(data, pos);
      pos += f.contentSize;
    }
    return { data, start };
  } catch (err) {
    return { problem: `cannot be decompressed (${err instanceof Error ? err.message : String(err)})` };
  }
}
