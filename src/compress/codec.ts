import { createRequire } from 'node:module';
import type { CCtx, CParameter, DCtx } from 'zstd-napi/binding.js';
import { createHash } from 'node:crypto';
import { LifeboatError } from '../core/errors.js';
import { keyedDigest, openBytes, type BlockKeys } from '../crypto/seal.js';
import type { CodecName } from '../format/constants.js';
import { LZ4_FRAME_BYTES, decodeLz4Frames, decodeLz4Range, decompressLz4Frames, isLz4Framed, lz4, lz4Frames } from './lz4-frames.js';

// The low-level zstd binding: contexts and buffers we manage ourselves.
const require = createRequire(import.meta.url);
const zstdBinding = require('zstd-napi/binding.js') as {
  DCtx: new () => DCtx;
  CCtx: new () => CCtx;
  CParameter: typeof CParameter;
  compressBound: (n: number) => number;
};

export interface CompressionSetting {
  readonly codec: CodecName;
  readonly level: number;
}

/** The default, chosen by bench/codec-bench: zstd level 1 compresses faster than lz4 here and ~20% smaller. */
export const DEFAULT_COMPRESSION: CompressionSetting = { codec: 'zstd', level: 1 };

export function parseCompression(text: string): CompressionSetting {
  const m = /^(none|lz4|zstd)(?::(-?\d+))?$/.exec(text.trim().toLowerCase());
  if (!m) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--compression: "${text}" is not one of none, lz4, zstd[:LEVEL]`);
  const codec = m[1] as CodecName;
  if (m[2] !== undefined && codec !== 'zstd') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--compression: only zstd takes a level`);
  const level = m[2] === undefined ? (codec === 'zstd' ? 1 : 0) : Number(m[2]);
  if (codec === 'zstd' && (level < -7 || level > 19))
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--compression: zstd level ${level} is outside -7..19`);
  return { codec, level };
}

export function formatCompression(s: CompressionSetting): string {
  return s.codec === 'zstd' ? `zstd:${s.level}` : s.codec;
}

/**
 * A zstd block is stored as independent frames of ZSTD_FRAME_BYTES of content
 * each, concatenated: a valid zstd stream that whole-block decoding reads in
 * one call, and of which a random read decodes only the frames it touches
 * (a 4 KiB read costs one 64 KiB frame, not a 1 MiB block). Every frame
 * carries its content size and an XXH64 of its content, which decompression
 * checks at ~1/10 the cost of the SHA-256 in the block table.
 */
export const ZSTD_FRAME_BYTES = 64 * 1024;

/**
 * One compression context and one output buffer per thread, kept warm:
 * frames are compressed back to back into the scratch buffer, and the block
 * leaves it in one copy of exactly its stored size.
 */
let compressor: { cctx: CCtx; level: number } | undefined;
let scratch = Buffer.alloc(0);

function zstdFrames(data: Buffer, level: number): Buffer {
  if (compressor?.level !== level) {
    const cctx = new zstdBinding.CCtx();
    cctx.setParameter(zstdBinding.CParameter.compressionLevel, level);
    cctx.setParameter(zstdBinding.CParameter.checksumFlag, 1);
    compressor = { cctx, level };
  }
  const frames = Math.ceil(data.length / ZSTD_FRAME_BYTES);
  const bound = frames * zstdBinding.compressBound(ZSTD_FRAME_BYTES);
  if (scratch.length < bound) scratch = Buffer.allocUnsafeSlow(bound);
  let end = 0;
  for (let at = 0; at < data.length; at += ZSTD_FRAME_BYTES) {
    end += compressor.cctx.compress2(scratch.subarray(end), data.subarray(at, at + ZSTD_FRAME_BYTES));
  }
  const out = Buffer.allocUnsafeSlow(end);
  scratch.copy(out, 0, 0, end);
  return out;
}

/**
 * Compresses one block. If compression does not shrink it, the block is kept
 * as it is (codec "none"), so incompressible data costs no decode time later.
 */
export function compressBlock(s: CompressionSetting, data: Buffer): { codec: CodecName; bytes: Buffer } {
  let out: Buffer;
  switch (s.codec) {
    case 'none':
      return { codec: 'none', bytes: data };
    case 'lz4':
      out = lz4Frames(data);
      break;
    case 'zstd':
      out = zstdFrames(data, s.level);
      break;
  }
  return out.length < data.length ? { codec: s.codec, bytes: out } : { codec: 'none', bytes: data };
}

// Decompression goes into a buffer we size from the block table, so a
// damaged frame header can never ask for a huge allocation.
let zstdContext = new zstdBinding.DCtx();

function zstdDecompress(stored: Buffer, rawLength: number): Buffer {
  const out = Buffer.allocUnsafeSlow(rawLength);
  let n: number;
  try {
    n = zstdContext.decompress(out, stored);
  } catch (err) {
    // A failed frame leaves the context mid-frame, refusing every later one: start afresh.
    zstdContext = new zstdBinding.DCtx();
    throw err;
  }
  return n === rawLength ? out : out.subarray(0, n);
}

/** Decompresses a stored block; throws (to be reported as a corrupt block) on any mismatch. */
export function decompressBlock(codec: CodecName, stored: Buffer, rawLength: number): Buffer {
  let out: Buffer;
  switch (codec) {
    case 'none':
      out = stored;
      break;
    case 'lz4':
      if (isLz4Framed(stored)) {
        out = decompressLz4Frames(stored, rawLength);
        break;
      }
      // An older block: one lz4-napi block. lz4-napi allocates what its 4-byte size prefix says: check it first.
      if (stored.length < 4 || stored.readUInt32LE(0) !== rawLength) throw new Error(`the lz4 size prefix does not say ${rawLength} bytes`);
      out = lz4().uncompressSync(stored);
      break;
    case 'zstd':
      out = zstdDecompress(stored, rawLength);
      break;
  }
  if (out.length !== rawLength) throw new Error(`decompressed ${out.length} bytes, expected ${rawLength}`);
  return out;
}

/** One zstd frame of a stored block: where it is, what it holds. */
export interface ZstdFrame {
  readonly offset: number;
  readonly length: number;
  readonly contentSize: number;
  readonly checksum: boolean;
}

/**
 * Walks the frames of a stored zstd block by their headers (RFC 8878 §3.1.1),
 * without decompressing. Undefined when the bytes are not a sequence of
 * frames that each state their content size (older single-frame blocks
 * without it, or damage): callers then decode the whole block.
 */
export function zstdFrameList(stored: Uint8Array): ZstdFrame[] | undefined {
  const frames: ZstdFrame[] = [];
  let at = 0;
  while (at < stored.length) {
    const start = at;
    if (at + 5 > stored.length || stored[at] !== 0x28 || stored[at + 1] !== 0xb5 || stored[at + 2] !== 0x2f || stored[at + 3] !== 0xfd) return undefined;
    const fhd = stored[at + 4]!;
    at += 5;
    const fcsFlag = fhd >> 6;
    const singleSegment = (fhd & 0x20) !== 0;
    const checksum = (fhd & 0x04) !== 0;
    if (!singleSegment) at += 1;
    at += [0, 1, 2, 4][fhd & 3]!;
    const fcsBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
    if (fcsBytes === 0 || at + fcsBytes > stored.length) return undefined;
    let contentSize = 0;
    for (let i = fcsBytes - 1; i >= 0; i--) contentSize = contentSize * 256 + stored[at + i]!;
    if (fcsBytes === 2) contentSize += 256;
    at += fcsBytes;
    for (;;) {
      if (at + 3 > stored.length) return undefined;
      const h = stored[at]! | (stored[at + 1]! << 8) | (stored[at + 2]! << 16);
      const type = (h >> 1) & 3;
      if (type === 3) return undefined;
      at += 3 + (type === 1 ? 1 : h >>> 3);
      if (h & 1) break;
    }
    if (checksum) at += 4;
    if (at > stored.length) return undefined;
    frames.push({ offset: start, length: at - start, contentSize, checksum });
  }
  return frames;
}

/** True when every frame of a stored zstd block carries a content checksum. */
export function zstdFrameHasChecksum(stored: Uint8Array): boolean {
  const frames = zstdFrameList(stored);
  if (frames) return frames.length > 0 && frames.every((f) => f.checksum);
  // A single frame without a stated content size: its own header says.
  return stored.length > 4 && stored[0] === 0x28 && stored[1] === 0xb5 && stored[2] === 0x2f && stored[3] === 0xfd && (stored[4]! & 0x04) !== 0;
}

/**
 * Decodes only the frames of a stored zstd block that cover [from, to) of
 * its content, each proven by its own checksum. Returns the decoded bytes
 * and the content offset they start at, or undefined when the block cannot
 * be read that way (not framed, or a frame without checksum): the caller
 * then decodes and verifies the whole block.
 */
export function decodeZstdRange(
  stored: Buffer,
  rawLength: number,
  from: number,
  to: number,
): { data: Buffer; start: number; bounds?: Int32Array } | { problem: string } | undefined {
  const frames = zstdFrameList(stored);
  if (!frames || !frames.every((f) => f.checksum) || frames.reduce((a, f) => a + f.contentSize, 0) !== rawLength) return undefined;
  // Frames of ZSTD_FRAME_BYTES each (the last may be shorter): their stored boundaries
  // let later reads of this block fetch only the frames they need.
  const uniform = frames.every((f, i) => (i < frames.length - 1 ? f.contentSize === ZSTD_FRAME_BYTES : f.contentSize <= ZSTD_FRAME_BYTES));
  const bounds = uniform ? Int32Array.from([...frames.map((f) => f.offset), stored.length]) : undefined;
  let pos = 0;
  let first = -1;
  let last = -1;
  let start = 0;
  let end = 0;
  frames.forEach((f, i) => {
    if (pos + f.contentSize > from && pos < to) {
      if (first < 0) {
        first = i;
        start = pos;
      }
      last = i;
      end = pos + f.contentSize;
    }
    pos += f.contentSize;
  });
  if (first < 0) return undefined;
  const span = stored.subarray(frames[first]!.offset, frames[last]!.offset + frames[last]!.length);
  try {
    const data = zstdDecompress(span, end - start);
    if (data.length !== end - start) return { problem: `decompressed ${data.length} bytes of frames holding ${end - start}` };
    return bounds ? { data, start, bounds } : { data, start };
  } catch (err) {
    return { problem: `cannot be decompressed (${err instanceof Error ? err.message : String(err)})` };
  }
}

/**
 * Decompresses a stored block and proves it is the block that was written.
 * A zstd frame with a content checksum is proven by decompression itself;
 * anything else by its SHA-256 digest. If a flipped bit clears the frame's
 * checksum flag, the SHA-256 path runs; if one sets it, the frame no longer
 * parses. Either way, damaged data never comes back as a block. `strict`
 * (health checks) checks the SHA-256 whatever the frames say.
 */
export function verifyingDecode(
  codec: CodecName,
  stored: Buffer,
  rawLength: number,
  digest: Uint8Array,
  strict = false,
  keys?: BlockKeys,
): { data: Buffer; problem: null } | { data: null; problem: string } {
  if (keys === undefined) return decodeOpened(codec, stored, rawLength, digest, strict);
  const plain = openStoredBlock(keys, stored, digest);
  if (plain === null) return { data: null, problem: SEAL_PROBLEM };
  return decodeOpened(codec, plain, rawLength, digest, strict, keys);
}

/** What a block whose AES-GCM tag fails is reported as: damaged, like one that fails its checksum. */
export const SEAL_PROBLEM = 'fails its authentication tag (damaged or tampered with)';

/** The compressed bytes of a sealed block (its keyed digest is the tag's associated data), or null when the tag fails. */
export function openStoredBlock(keys: BlockKeys, stored: Uint8Array, digest: Uint8Array): Buffer | null {
  return openBytes(keys.seal, stored, digest);
}

/**
 * verifyingDecode of bytes already opened (or never sealed). A sealed block's
 * tag already proved its bytes, so its keyed digest is checked only when
 * `strict` (health checks, verified copies).
 */
export function decodeOpened(
  codec: CodecName,
  stored: Buffer,
  rawLength: number,
  digest: Uint8Array,
  strict = false,
  keys?: BlockKeys,
): { data: Buffer; problem: null } | { data: null; problem: string } {
  let data: Buffer;
  try {
    data = decompressBlock(codec, stored, rawLength);
  } catch (err) {
    return { data: null, problem: `cannot be decompressed (${err instanceof Error ? err.message : String(err)})` };
  }
  if (keys !== undefined) {
    if (strict && !keyedDigest(keys.mac, data).equals(digest)) return { data: null, problem: 'fails its checksum' };
    return { data, problem: null };
  }
  // Frames that carry their own checksums were checked by the decompression.
  if (!strict && ((codec === 'zstd' && zstdFrameHasChecksum(stored)) || (codec === 'lz4' && isLz4Framed(stored)))) return { data, problem: null };
  if (!createHash('sha256').update(data).digest().equals(digest)) return { data: null, problem: 'fails its checksum' };
  return { data, problem: null };
}

/**
 * Decodes frames [first, last] of a block stored as uniform ZSTD_FRAME_BYTES
 * frames, given only their stored bytes (found through boundaries from an
 * earlier walk). Each frame proves itself by its checksum.
 */
export function decodeZstdFrames(span: Buffer, first: number, last: number, rawLength: number): { data: Buffer; start: number } | { problem: string } {
  const start = first * ZSTD_FRAME_BYTES;
  const end = Math.min(rawLength, (last + 1) * ZSTD_FRAME_BYTES);
  try {
    const data = zstdDecompress(span, end - start);
    if (data.length !== end - start) return { problem: `decompressed ${data.length} bytes of frames holding ${end - start}` };
    return { data, start };
  } catch (err) {
    return { problem: `cannot be decompressed (${err instanceof Error ? err.message : String(err)})` };
  }
}

/** Content bytes per frame of the codecs whose blocks are stored in uniform frames (a range read decodes only its frames). */
export function frameBytesOf(codec: CodecName): number | undefined {
  return codec === 'zstd' ? ZSTD_FRAME_BYTES : codec === 'lz4' ? LZ4_FRAME_BYTES : undefined;
}

/** decodeZstdRange or decodeLz4Range by codec; undefined when the block is read whole. */
export function decodeRange(
  codec: CodecName,
  stored: Buffer,
  rawLength: number,
  from: number,
  to: number,
): { data: Buffer; start: number; bounds?: Int32Array } | { problem: string } | undefined {
  if (codec === 'zstd') return decodeZstdRange(stored, rawLength, from, to);
  if (codec === 'lz4') return decodeLz4Range(stored, rawLength, from, to);
  return undefined;
}

/** decodeZstdFrames or decodeLz4Frames by codec: frames [first, last] from their stored bytes alone. */
export function decodeFrames(
  codec: CodecName,
  span: Buffer,
  first: number,
  last: number,
  rawLength: number,
): { data: Buffer; start: number } | { problem: string } {
  return codec === 'lz4' ? decodeLz4Frames(span, first, last, rawLength) : decodeZstdFrames(span, first, last, rawLength);
}
