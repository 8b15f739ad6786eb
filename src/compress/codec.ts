import { compressSync as lz4Compress, uncompressSync as lz4Uncompress } from 'lz4-napi';
import { createRequire } from 'node:module';
import { compress as zstdCompress } from 'zstd-napi';
import type { DCtx } from 'zstd-napi/binding.js';
import { createHash } from 'node:crypto';
import { LifeboatError } from '../core/errors.js';
import type { CodecName } from '../format/constants.js';

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
  if (codec === 'zstd' && (level < -7 || level > 19)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--compression: zstd level ${level} is outside -7..19`);
  return { codec, level };
}

export function formatCompression(s: CompressionSetting): string {
  return s.codec === 'zstd' ? `zstd:${s.level}` : s.codec;
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
      out = lz4Compress(data);
      break;
    case 'zstd':
      // The frame carries an XXH64 of its content, which decompression checks
      // at ~1/10 the cost of the SHA-256 in the block table (see verifyingDecode).
      out = zstdCompress(data, { compressionLevel: s.level, checksumFlag: true });
      break;
  }
  return out.length < data.length ? { codec: s.codec, bytes: out } : { codec: 'none', bytes: data };
}

// The low-level binding: it decompresses into a buffer we size from the block
// table, so a damaged frame header can never ask for a huge allocation.
const zstdBinding = createRequire(import.meta.url)('zstd-napi/binding.js') as { DCtx: new () => DCtx };
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
      // lz4-napi allocates what the 4-byte size prefix says: check it first.
      if (stored.length < 4 || stored.readUInt32LE(0) !== rawLength) throw new Error(`the lz4 size prefix does not say ${rawLength} bytes`);
      out = lz4Uncompress(stored);
      break;
    case 'zstd':
      out = zstdDecompress(stored, rawLength);
      break;
  }
  if (out.length !== rawLength) throw new Error(`decompressed ${out.length} bytes, expected ${rawLength}`);
  return out;
}

/** True for a zstd frame whose header says it carries a content checksum (RFC 8878 §3.1.1.1.1, bit 2). */
export function zstdFrameHasChecksum(stored: Uint8Array): boolean {
  return stored.length > 4 && stored[0] === 0x28 && stored[1] === 0xb5 && stored[2] === 0x2f && stored[3] === 0xfd && (stored[4]! & 0x04) !== 0;
}

/**
 * Decompresses a stored block and proves it is the block that was written.
 * A zstd frame with a content checksum is proven by decompression itself;
 * anything else by its SHA-256 digest. If a flipped bit clears the frame's
 * checksum flag, the SHA-256 path runs; if one sets it, the frame no longer
 * parses. Either way, damaged data never comes back as a block.
 */
export function verifyingDecode(codec: CodecName, stored: Buffer, rawLength: number, digest: Uint8Array): { data: Buffer; problem: null } | { data: null; problem: string } {
  let data: Buffer;
  try {
    data = decompressBlock(codec, stored, rawLength);
  } catch (err) {
    return { data: null, problem: `cannot be decompressed (${err instanceof Error ? err.message : String(err)})` };
  }
  if (codec === 'zstd' && zstdFrameHasChecksum(stored)) return { data, problem: null };
  if (!createHash('sha256').update(data).digest().equals(digest)) return { data: null, problem: 'fails its checksum' };
  return { data, problem: null };
}
