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
