import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { compress as zstdCompress } from 'zstd-napi';
import {
  ZSTD_FRAME_BYTES,
  compressBlock,
  decodeFrames,
  decodeRange,
  decodeZstdFrames,
  decodeZstdRange,
  verifyingDecode,
  zstdFrameHasChecksum,
  zstdFrameList,
} from '../src/compress/codec.js';
import { prng } from '../src/testing/prng.js';
import { LZ4_FRAME_BYTES, isLz4Framed, lz4 as loadLz4 } from '../src/compress/lz4-frames.js';

const lz4 = loadLz4();

/** A compressible 1 MiB block: runs of pseudo-random bytes. */
function sampleBlock(seed: number): Buffer {
  const rand = prng(seed);
  const b = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < b.length; i += 64) b.fill(Math.floor(rand() * 256), i, i + 1 + Math.floor(rand() * 63));
  return b;
}

const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

/** 300 copies of `bytes`, each with one bit flipped: in each of the first `head` bytes, then at random places. */
function* flippedCopies(bytes: Buffer, seed: number, head: number): Generator<{ damaged: Buffer; at: number }> {
  const rand = prng(seed);
  for (let k = 0; k < 300; k++) {
    const damaged = Buffer.from(bytes);
    const at = k < head ? k : Math.floor(rand() * damaged.length);
    damaged[at] = damaged[at]! ^ (1 << Math.floor(rand() * 8));
    yield { damaged, at };
  }
}

test('zstd blocks carry a frame checksum, and every flipped byte is caught by it or by SHA-256', () => {
  const block = sampleBlock(1);
  const { codec, bytes } = compressBlock({ codec: 'zstd', level: 1 }, block);
  assert.equal(codec, 'zstd');
  assert.ok(zstdFrameHasChecksum(bytes));
  const good = verifyingDecode('zstd', bytes, block.length, sha(block));
  assert.ok(good.data?.equals(block));
  for (const { damaged, at } of flippedCopies(bytes, 2, 12)) {
    const r = verifyingDecode('zstd', damaged, block.length, sha(block));
    // Either refused, or (never, but if the flip was a no-op) the exact block.
    if (r.data !== null) assert.ok(r.data.equals(block), `byte ${at}: wrong data came back`);
  }
  // A damaged frame must not poison the decoder for the blocks after it.
  assert.ok(verifyingDecode('zstd', bytes, block.length, sha(block)).data?.equals(block));
});

test('zstd frames without a checksum (older files) are verified by SHA-256', () => {
  const block = sampleBlock(3);
  const bytes = zstdCompress(block, { compressionLevel: 1 });
  assert.equal(zstdFrameHasChecksum(bytes), false);
  assert.ok(verifyingDecode('zstd', bytes, block.length, sha(block)).data?.equals(block));
  const wrongDigest = Buffer.alloc(32, 1);
  assert.equal(verifyingDecode('zstd', bytes, block.length, wrongDigest).problem, 'fails its checksum');
});

test('uncompressed blocks and lz4 blocks of one size-prefixed lz4 block (older files) are verified by SHA-256', () => {
  const block = sampleBlock(4);
  const none = compressBlock({ codec: 'none', level: 0 }, block);
  for (const [codec, bytes] of [
    ['none', none.bytes],
    ['lz4', lz4.compressSync(block)],
  ] as const) {
    assert.equal(isLz4Framed(bytes), false);
    assert.ok(verifyingDecode(codec, bytes, block.length, sha(block)).data?.equals(block));
    assert.equal(verifyingDecode(codec, bytes, block.length, Buffer.alloc(32, 1)).problem, 'fails its checksum');
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 100] = damaged[damaged.length - 100]! ^ 0x10;
    assert.equal(verifyingDecode(codec, damaged, block.length, sha(block)).data, null);
  }
  // Read whole, not in part.
  assert.equal(decodeRange('lz4', lz4.compressSync(block), block.length, 0, 4096), undefined);
});

test('lz4 blocks are stored in 64 KiB frames, each checked by a CRC-32: no SHA-256 per read, and every flipped byte is caught', () => {
  const block = sampleBlock(11);
  const { codec, bytes } = compressBlock({ codec: 'lz4', level: 0 }, block);
  assert.equal(codec, 'lz4');
  assert.ok(isLz4Framed(bytes));
  // Proven by its frames: a wrong digest is not looked at, unless strict (verify, copies).
  assert.ok(verifyingDecode('lz4', bytes, block.length, Buffer.alloc(32, 1)).data?.equals(block));
  assert.equal(verifyingDecode('lz4', bytes, block.length, Buffer.alloc(32, 1), true).problem, 'fails its checksum');
  assert.ok(verifyingDecode('lz4', bytes, block.length, sha(block), true).data?.equals(block));
  for (const { damaged, at } of flippedCopies(bytes, 12, 24)) {
    const r = verifyingDecode('lz4', damaged, block.length, sha(block));
    if (r.data !== null) assert.ok(r.data.equals(block), `byte ${at}: wrong data came back`);
    const part = decodeRange('lz4', damaged, block.length, 5 * LZ4_FRAME_BYTES + 7, 5 * LZ4_FRAME_BYTES + 4103);
    if (part && 'data' in part) assert.ok(part.data.equals(block.subarray(part.start, part.start + part.data.length)), `byte ${at}: wrong range`);
  }
  // Ranges decode only their frames, and the boundaries let a later read fetch just those frames' bytes.
  const rand = prng(13);
  for (let k = 0; k < 50; k++) {
    const from = Math.floor(rand() * (block.length - 1));
    const to = Math.min(block.length, from + 1 + Math.floor(rand() * 200_000));
    const r = decodeRange('lz4', bytes, block.length, from, to);
    assert.ok(r && 'data' in r && r.bounds);
    assert.equal(r.start % LZ4_FRAME_BYTES, 0);
    assert.ok(r.start <= from && r.start + r.data.length >= to && r.data.length <= to - r.start + LZ4_FRAME_BYTES);
    assert.ok(r.data.equals(block.subarray(r.start, r.start + r.data.length)));
    const f = Math.floor(from / LZ4_FRAME_BYTES);
    const l = Math.floor((to - 1) / LZ4_FRAME_BYTES);
    const again = decodeFrames('lz4', bytes.subarray(r.bounds[f]!, r.bounds[l + 1]!), f, l, block.length);
    assert.ok('data' in again && again.start === r.start && again.data.equals(r.data));
  }
  // Frames swapped within the block, or one copied over another, are caught (the index is in each frame's CRC-32).
  const list = decodeRange('lz4', bytes, block.length, 0, 1);
  assert.ok(list && 'bounds' in list && list.bounds);
  const frame = (i: number): Buffer => bytes.subarray(list.bounds![i]!, list.bounds![i + 1]!);
  const swapped = Buffer.concat([bytes.subarray(0, list.bounds[0]!), frame(1), frame(0), bytes.subarray(list.bounds[2]!)]);
  assert.equal(verifyingDecode('lz4', swapped, block.length, sha(block)).data, null);
  const copied = Buffer.concat([bytes.subarray(0, list.bounds[1]!), frame(0), bytes.subarray(list.bounds[2]!)]);
  assert.equal(verifyingDecode('lz4', copied, block.length, sha(block)).data, null);
  // A short last block has a short last frame.
  const short = block.subarray(0, 3 * LZ4_FRAME_BYTES + 1000);
  const s = compressBlock({ codec: 'lz4', level: 0 }, short);
  assert.ok(verifyingDecode('lz4', s.bytes, short.length, sha(short)).data?.equals(short));
  const tail = decodeRange('lz4', s.bytes, short.length, short.length - 10, short.length);
  assert.ok(tail && 'data' in tail && tail.data.equals(short.subarray(3 * LZ4_FRAME_BYTES)));
});

test('a zstd block is a sequence of 64 KiB frames: whole-block decode reads them all, a range decodes only its frames', () => {
  const block = sampleBlock(5);
  const { bytes } = compressBlock({ codec: 'zstd', level: 1 }, block);
  const frames = zstdFrameList(bytes)!;
  assert.equal(frames.length, block.length / ZSTD_FRAME_BYTES);
  assert.ok(frames.every((f) => f.checksum && f.contentSize === ZSTD_FRAME_BYTES));
  assert.equal(
    frames.reduce((a, f) => a + f.length, 0),
    bytes.length,
  );
  assert.ok(verifyingDecode('zstd', bytes, block.length, sha(block)).data?.equals(block));
  const rand = prng(6);
  for (let k = 0; k < 50; k++) {
    const from = Math.floor(rand() * (block.length - 1));
    const to = Math.min(block.length, from + 1 + Math.floor(rand() * 200_000));
    const r = decodeZstdRange(bytes, block.length, from, to);
    assert.ok(r && 'data' in r);
    assert.equal(r.start % ZSTD_FRAME_BYTES, 0);
    assert.ok(r.start <= from && r.start + r.data.length >= to);
    assert.ok(r.data.equals(block.subarray(r.start, r.start + r.data.length)));
  }
  // A flipped byte inside frame 3 fails a read of frame 3, and the whole-block decode.
  const damaged = Buffer.from(bytes);
  const f3 = frames[3]!;
  const at3 = f3.offset + Math.floor(f3.length / 2);
  damaged[at3] = damaged[at3]! ^ 0x40;
  const bad = decodeZstdRange(damaged, block.length, 3 * ZSTD_FRAME_BYTES + 10, 3 * ZSTD_FRAME_BYTES + 4106);
  assert.ok(bad === undefined || 'problem' in bad, 'damaged frame decoded');
  assert.equal(verifyingDecode('zstd', damaged, block.length, sha(block)).data, null);
  // Frames that were not touched still read.
  const good = decodeZstdRange(damaged, block.length, 0, 4096);
  assert.ok(good && 'data' in good && good.data.equals(block.subarray(0, good.data.length)));
});

test('blocks not stored in frames (single frame, no content size) are read whole', () => {
  const block = sampleBlock(7);
  const single = zstdCompress(block, { compressionLevel: 1, checksumFlag: true, contentSizeFlag: false });
  assert.equal(zstdFrameList(single), undefined);
  assert.equal(decodeZstdRange(single, block.length, 0, 4096), undefined);
  assert.ok(verifyingDecode('zstd', single, block.length, sha(block)).data?.equals(block));
});

test('frame boundaries from one range decode let a later read decode just its frames', () => {
  const block = sampleBlock(9);
  const { bytes } = compressBlock({ codec: 'zstd', level: 1 }, block);
  const first = decodeZstdRange(bytes, block.length, 70_000, 70_100);
  assert.ok(first && 'bounds' in first && first.bounds);
  const b = first.bounds;
  assert.equal(b.length, block.length / ZSTD_FRAME_BYTES + 1);
  for (const [from, to] of [
    [0, 10],
    [200_000, 330_000],
    [block.length - 5, block.length],
  ] as const) {
    const f = Math.floor(from / ZSTD_FRAME_BYTES);
    const l = Math.floor((to - 1) / ZSTD_FRAME_BYTES);
    const r = decodeZstdFrames(bytes.subarray(b[f]!, b[l + 1]!), f, l, block.length);
    assert.ok('data' in r);
    assert.ok(r.data.equals(block.subarray(r.start, r.start + r.data.length)));
    assert.ok(r.start <= from && r.start + r.data.length >= to);
  }
});
