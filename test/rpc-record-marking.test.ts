import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecordMarkingError, RecordReader, recordHeader } from '../src/rpc/index.js';
import { prng } from '../src/testing/prng.js';

/** A fragment header: `last` sets bit 31, the rest is the length (RFC 5531 §11). */
function fragmentHeader(length: number, last: boolean): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(((last ? 0x80000000 : 0) | length) >>> 0);
  return h;
}

/** Heap plus Buffer backing stores: what a peer's bytes can make the process hold. */
function heldMemory(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Feeds `wire` in socket-sized chunks; returns the error the reader threw, if any. */
function feedAll(reader: RecordReader, wire: Buffer, chunk = 64 * 1024): unknown {
  try {
    for (let at = 0; at < wire.length; at += chunk) reader.feed(wire.subarray(at, at + chunk));
  } catch (err) {
    return err;
  }
  return undefined;
}

test('record marking: 4 MiB of non-last zero-length fragments is refused, and memory stays bounded', () => {
  const reader = new RecordReader(1024 * 1024);
  const before = heldMemory();
  const err = feedAll(reader, Buffer.alloc(4 * 1024 * 1024));
  const grown = heldMemory() - before;
  assert.ok(err instanceof RecordMarkingError, `a flood of empty fragments is a protocol violation (got ${String(err)})`);
  assert.ok(grown < 32 * 1024 * 1024, `memory grew by ${grown} bytes`);
  assert.ok(reader.heldBytes <= 64 * 1024 + 1024 * 1024, `reader holds ${reader.heldBytes} bytes`);
});

test('record marking: a stream of 1-byte fragments is refused before it costs more than its size', () => {
  const reader = new RecordReader(1024 * 1024);
  // 200,000 one-byte fragments: 200 KB of payload, within the 1 MiB record cap.
  const wire = Buffer.concat(Array.from({ length: 200_000 }, () => Buffer.from([0, 0, 0, 1, 0x55])));
  const before = heldMemory();
  const err = feedAll(reader, wire);
  const grown = heldMemory() - before;
  assert.ok(err instanceof RecordMarkingError, `too many fragments in one record (got ${String(err)})`);
  assert.ok(grown < 16 * 1024 * 1024, `memory grew by ${grown} bytes`);
});

test('record marking: a record of many small fragments is assembled in one buffer, not one object per fragment', () => {
  const fragments = 5000;
  const reader = new RecordReader(1024 * 1024, { maxFragments: fragments });
  const payload = Buffer.from(Array.from({ length: fragments }, (_, i) => i & 0xff));
  const parts: Buffer[] = [];
  for (let i = 0; i < fragments; i++) parts.push(fragmentHeader(1, i === fragments - 1), payload.subarray(i, i + 1));
  const wire = Buffer.concat(parts);
  const got: Buffer[] = [];
  // Dribbled 3 bytes at a time: every header and body is split across chunks. The last fragment comes after the check.
  const beforeLast = wire.length - 5;
  for (let at = 0; at < beforeLast; at += 3) got.push(...reader.feed(wire.subarray(at, Math.min(at + 3, beforeLast))));
  assert.equal(got.length, 0);
  assert.ok(reader.heldBytes <= 2 * fragments, `while assembling, the reader holds ${reader.heldBytes} bytes for ${fragments} payload bytes`);
  got.push(...reader.feed(wire.subarray(beforeLast)));
  assert.equal(got.length, 1);
  assert.ok(got[0]!.equals(payload));
  assert.equal(reader.buffered, 0);
});

test('record marking: the fragment limit counts every fragment of a record and resets per record', () => {
  const reader = new RecordReader(1024, { maxFragments: 4 });
  const four = Buffer.concat([
    fragmentHeader(0, false),
    fragmentHeader(1, false),
    Buffer.from([7]),
    fragmentHeader(0, false),
    recordHeader(2),
    Buffer.from([8, 9]),
  ]);
  assert.deepEqual(
    reader.feed(Buffer.concat([four, four])).map((r) => [...r]),
    [
      [7, 8, 9],
      [7, 8, 9],
    ],
  );
  assert.throws(() => reader.feed(Buffer.concat([fragmentHeader(0, false), four])), RecordMarkingError);
});

test('record marking: next() hands out one record at a time and leaves the rest unread', () => {
  const reader = new RecordReader(1024);
  const rand = prng(5);
  const records = Array.from({ length: 50 }, (_, i) => Buffer.alloc(1 + Math.floor(rand() * 100), i));
  reader.push(Buffer.concat(records.flatMap((r) => [recordHeader(r.length), r])));
  assert.ok(reader.next()!.equals(records[0]!));
  assert.ok(reader.buffered > 0, 'the other records are still queued');
  for (let i = 1; i < records.length; i++) assert.ok(reader.next()!.equals(records[i]!), `record ${i}`);
  assert.equal(reader.next(), undefined);
  assert.equal(reader.buffered, 0);
});

test('record marking: a record larger than the cap is refused from its header, before its bytes arrive', () => {
  const reader = new RecordReader(1000);
  assert.throws(() => reader.feed(Buffer.concat([fragmentHeader(600, false), Buffer.alloc(600), fragmentHeader(401, true)])), RecordMarkingError);
  assert.throws(() => new RecordReader(1000).feed(fragmentHeader(0x7fffffff, true)), RecordMarkingError);
});
