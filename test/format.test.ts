import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLifeboatError } from '../src/core/errors.js';
import { newUuid } from '../src/core/ids.js';
import {
  BlockTableBuilder,
  DATA_START,
  ENTRY_SIZE,
  FORMAT_CURRENT,
  PAGE,
  decodeHeader,
  decodeRoot,
  decodeSlot,
  encodeHeader,
  encodeRoot,
  encodeSlot,
  pickSlot,
  rootDigest,
  sha256,
  type FileHeader,
  type RootInfo,
} from '../src/format/index.js';

const header: FileHeader = {
  formatVersion: FORMAT_CURRENT,
  kind: 'increment',
  blockSize: 1 << 20,
  createdAtMs: 1_700_000_000_123,
  fileId: newUuid(),
  chainId: newUuid(),
  jobId: newUuid(),
  diskSizes: [10 * 2 ** 30, 12345],
};

test('header round-trips and is exactly one page', () => {
  const b = encodeHeader(header);
  assert.equal(b.length, PAGE);
  assert.deepEqual(decodeHeader(b, 'x.vib'), header);
});

test('header: any flipped byte in the checksummed area is detected', () => {
  const b = encodeHeader(header);
  for (const at of [0, 9, 12, 30, 80, 500, PAGE - 33, PAGE - 1]) {
    const c = Buffer.from(b);
    c[at] = c[at]! ^ 0x40;
    assert.throws(
      () => decodeHeader(c, 'x.vib'),
      (e) => isLifeboatError(e) && e.code === 'LFB_ERR_FILE_CORRUPT',
      `byte ${at}`,
    );
  }
});

test('header: a newer format version is refused with its own code', () => {
  const b = encodeHeader({ ...header, formatVersion: FORMAT_CURRENT + 1 });
  assert.throws(
    () => decodeHeader(b, 'x.vbk'),
    (e) => isLifeboatError(e, 'LFB_ERR_FILE_VERSION'),
  );
});

test('header: a truncated header is reported as truncation', () => {
  assert.throws(
    () => decodeHeader(encodeHeader(header).subarray(0, 100), 'x.vbk'),
    (e) => isLifeboatError(e, 'LFB_ERR_FILE_TRUNCATED'),
  );
});

test('slots: the valid slot with the higher generation wins; torn slots are ignored', () => {
  const s1 = { generation: 1, rootOffset: DATA_START, rootLength: 100, fileEnd: DATA_START + 100, rootDigest: sha256(Buffer.from('a')) };
  const s2 = { ...s1, generation: 2, rootOffset: DATA_START + 500 };
  const a = decodeSlot(encodeSlot(s1));
  const b = decodeSlot(encodeSlot(s2));
  assert.deepEqual(a, s1);
  assert.equal(pickSlot(a, b)?.index, 1);
  const torn = encodeSlot(s2);
  torn[20] = torn[20]! ^ 1;
  assert.equal(decodeSlot(torn), undefined);
  assert.equal(pickSlot(a, decodeSlot(torn))?.index, 0);
  assert.equal(pickSlot(undefined, undefined), undefined);
  assert.equal(decodeSlot(Buffer.alloc(PAGE)), undefined);
});

test('root with block tables round-trips; tables find blocks in O(1)', () => {
  const t0 = new BlockTableBuilder(1);
  const d = sha256(Buffer.from('block'));
  t0.addData(3, 'zstd', DATA_START, 77, d);
  t0.addZero(7);
  t0.addData(9, 'lz4', DATA_START + 77, 10, sha256(Buffer.from('x')));
  const t1 = new BlockTableBuilder();
  const info: RootInfo = {
    kind: 'increment',
    seq: 5,
    createdAtMs: 1_700_000_000_000,
    pointId: 'a1b2c3d4e5f6',
    parentPointId: '0102030405ff',
    mergedCount: 0,
    diskSizes: [10 << 20, 1 << 20],
    meta: { vm: { name: 'vm', vcpus: 1, memoryMiB: 512, firmware: 'bios', disks: [] }, trigger: 't' },
  };
  const enc = encodeRoot(info, [t0.build(), t1.build()]);
  const root = decodeRoot(enc, 'x');
  assert.equal(root.pointId, info.pointId);
  assert.equal(root.parentPointId, info.parentPointId);
  assert.deepEqual(root.diskSizes, info.diskSizes);
  assert.deepEqual(root.meta, info.meta);
  const t = root.tables[0]!;
  assert.equal(t.count, 3);
  assert.equal(t.find(3, 10), 0);
  assert.equal(t.find(7, 10), 1);
  assert.equal(t.find(5, 10), -1);
  assert.ok(t.isZero(1));
  assert.equal(t.codec(0), 'zstd');
  assert.equal(t.codec(2), 'lz4');
  assert.equal(t.storedLength(0), 77);
  assert.ok(t.digest(0).equals(d));
  assert.equal(root.tables[1]!.count, 0);
  assert.equal(t.validate(10, DATA_START, DATA_START + 87), undefined);
  assert.match(t.validate(10, DATA_START, DATA_START + 80) ?? '', /outside the data area/);
  assert.match(t.validate(8, DATA_START, DATA_START + 87) ?? '', /beyond the disk/);
  assert.equal(rootDigest(enc).length, 32);
});

test('root: truncation and trailing bytes are corruption', () => {
  const t = new BlockTableBuilder();
  t.addZero(1);
  const enc = encodeRoot(
    {
      kind: 'full',
      seq: 1,
      createdAtMs: 0,
      pointId: '000000000001',
      parentPointId: null,
      mergedCount: 0,
      diskSizes: [4 << 20],
      meta: { vm: { name: 'v', vcpus: 1, memoryMiB: 64, firmware: 'bios', disks: [] } },
    },
    [t.build()],
  );
  assert.throws(
    () => decodeRoot(enc.subarray(0, enc.length - ENTRY_SIZE), 'x'),
    (e) => isLifeboatError(e, 'LFB_ERR_FILE_CORRUPT'),
  );
  assert.throws(
    () => decodeRoot(Buffer.concat([enc, Buffer.alloc(8)]), 'x'),
    (e) => isLifeboatError(e, 'LFB_ERR_FILE_CORRUPT'),
  );
});

test('block table builder refuses out-of-order blocks', () => {
  const b = new BlockTableBuilder();
  b.addZero(5);
  assert.throws(() => b.addZero(5));
  assert.throws(() => b.addZero(2));
});
