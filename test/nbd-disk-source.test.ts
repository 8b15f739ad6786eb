// NbdDiskSource's limit on reads in flight: the backup pipeline asks for many blocks at once, and a source opened
// with `readsInFlight` sends no more than that to its server at a time, with every byte right.
// No root, QEMU or TCP port (the server is on a unix socket).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { NbdDiskSource } from '../src/source/nbd-disk-source.js';
import { patternDevice, withServer } from './nbd-devices.js';

const BLOCK = 64 * 1024;

for (const limit of [2, undefined]) {
  test(`eight reads at once reach the server ${limit === undefined ? 'together without a limit' : `${limit} at a time with readsInFlight ${limit}`}`, async () => {
    const dev = patternDevice(16 * BLOCK, BLOCK, () => sleep(5));
    await withServer({ disk: dev }, {}, async (socket) => {
      const source = await NbdDiskSource.open('disk', { socket, exportName: 'disk' }, limit === undefined ? {} : { readsInFlight: limit });
      try {
        const blocks = [3, 0, 7, 1, 12, 5, 9, 15];
        const bufs = blocks.map(() => Buffer.alloc(BLOCK));
        const got = await Promise.all(blocks.map((b, k) => source.read(bufs[k]!, b * BLOCK)));
        assert.deepEqual(
          got,
          blocks.map(() => BLOCK),
        );
        blocks.forEach((b, k) =>
          assert.ok(
            bufs[k]!.every((x) => x === b),
            `block ${b} read back wrong`,
          ),
        );
        assert.equal(dev.reads, blocks.length);
        assert.equal(dev.peakActive, limit ?? blocks.length);
      } finally {
        await source.close();
      }
    });
  });
}

test('reads that start as others end stay within readsInFlight, and a failed read frees its place', { timeout: 20_000 }, async () => {
  // Four lanes start their next read as soon as one ends. With one place, a failed read that kept it would leave
  // every later read waiting (the test's timeout).
  const failAt = 5 * BLOCK;
  const dev = patternDevice(64 * BLOCK, BLOCK);
  const read = dev.read.bind(dev);
  dev.read = async (offset, length) => {
    if (offset === failAt) throw Object.assign(new Error('bad sector'), { code: 'EIO' });
    return read(offset, length);
  };
  await withServer({ disk: dev }, {}, async (socket) => {
    const source = await NbdDiskSource.open('disk', { socket, exportName: 'disk' }, { readsInFlight: 1 });
    try {
      const failures: number[] = [];
      await Promise.all(
        [0, 1, 2, 3].map(async (lane) => {
          for (let b = lane; b < 64; b += 4) {
            const buf = Buffer.alloc(BLOCK);
            const ok = await source.read(buf, b * BLOCK).then(
              () => true,
              () => false,
            );
            if (!ok) failures.push(b);
            else
              assert.ok(
                buf.every((x) => x === b),
                `block ${b} read back wrong`,
              );
          }
        }),
      );
      assert.deepEqual(failures, [5]);
      assert.equal(dev.reads, 63); // the failing block never reached the counting read
      assert.equal(dev.peakActive, 1, `${dev.peakActive} reads at the server at once`);
    } finally {
      await source.close();
    }
  });
});
