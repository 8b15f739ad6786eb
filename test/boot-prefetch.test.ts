import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock } from '../src/core/clock.js';
import { createLogger } from '../src/core/log.js';
import { InstantRecovery } from '../src/recovery/index.js';
import { bootListPath, decodeBootList, encodeBootList } from '../src/recovery/boot-prefetch.js';
import { Repository } from '../src/repository/index.js';
import { countDecodes } from './decode-counter.js';
import { MiB, randomBytes, repoWithPoint, rng, tempDir } from './helpers.js';

test('boot list: numbers round-trip; a damaged list is refused, not misread', () => {
  const blocks = [5, 2, 7, 0, 4_000_000];
  assert.deepEqual(decodeBootList(encodeBootList(blocks)), blocks);
  assert.deepEqual(decodeBootList(encodeBootList([])), []);
  const f = encodeBootList(blocks);
  f[f.length - 2]! ^= 1;
  assert.match(decodeBootList(f) as string, /checksum/);
  assert.match(decodeBootList(encodeBootList(blocks).subarray(0, 20)) as string, /holds/);
  assert.match(decodeBootList(Buffer.from('hello world!')) as string, /not a boot list/);
});

test(
  'boot prefetch: the next session of a job decodes what the last one read first, before its guest asks, and serves the same bytes',
  { timeout: 120_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    const decodes = countDecodes();
    let ir: InstantRecovery | undefined;
    try {
      const content = randomBytes(rng(41), 12 * MiB);
      const repo = await repoWithPoint(dir, content, 'j');
      // Without the disk cache, only the prefetch can have the blocks ready.
      ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'), { diskCacheBudgetBytes: 0, bootRecordMs: 60_000 });
      const read = async (session: string, block: number, length = MiB): Promise<void> => {
        const at = block * MiB;
        assert.ok((await ir!.session(session).overlays[0]!.read(at, length)).equals(content.subarray(at, at + length)), `${session} block ${block}`);
      };
      await ir.start('j', 'latest', { name: 'first' });
      await ir.bootPrefetch('first');
      for (const b of [5, 2, 7, 5]) await read('first', b);
      await read('first', 9, 4096);
      await ir.stop('first');
      assert.deepEqual(decodeBootList(await readFile(bootListPath(repo, 'j', 0))), [5, 2, 7, 9], 'the blocks first read, in order, once each');

      decodes.count = 0;
      await ir.start('j', 'latest', { name: 'second' });
      await ir.bootPrefetch('second');
      assert.equal(decodes.count, 4, 'the four blocks were decoded ahead');
      const hitsBefore = ir.cacheStats().memory.hits;
      for (const b of [9, 7, 2, 5]) await read('second', b);
      assert.equal(decodes.count, 4, 'and the guest found them decoded');
      assert.ok(ir.cacheStats().memory.hits - hitsBefore >= 4);

      // Reads after the recording time are not noted; a session nobody read from leaves the list alone.
      await ir.close();
      ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'), { diskCacheBudgetBytes: 0, bootRecordMs: 300 });
      await ir.loadSessions();
      // The time starts at the first read, not when the session is published (a hypervisor powers the VM on later).
      await ir.start('j', 'latest', { name: 'late' });
      await new Promise((r) => setTimeout(r, 500));
      await read('late', 2);
      await new Promise((r) => setTimeout(r, 700));
      await ir.stop('late');
      assert.deepEqual(decodeBootList(await readFile(bootListPath(repo, 'j', 0))), [2], 'a whole recording replaces the list');
      await ir.start('j', 'latest', { name: 'third' });
      await read('third', 1);
      await new Promise((r) => setTimeout(r, 700));
      await read('third', 3);
      await ir.stop('third');
      assert.deepEqual(decodeBootList(await readFile(bootListPath(repo, 'j', 0))), [1]);
      await ir.start('j', 'latest', { name: 'idle' });
      await ir.stop('idle');
      assert.deepEqual(decodeBootList(await readFile(bootListPath(repo, 'j', 0))), [1]);
      // A session that ends before its time is up puts its blocks first and keeps the old list's after them.
      await ir.close();
      ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'), { diskCacheBudgetBytes: 0, bootRecordMs: 60_000 });
      await ir.loadSessions();
      await ir.start('j', 'latest', { name: 'short' });
      await read('short', 6);
      await ir.stop('short');
      assert.deepEqual(decodeBootList(await readFile(bootListPath(repo, 'j', 0))), [6, 1]);

      // A damaged list means no prefetch, and the session works.
      await writeFile(bootListPath(repo, 'j', 0), 'garbage');
      decodes.count = 0;
      await ir.start('j', 'latest', { name: 'fourth' });
      await ir.bootPrefetch('fourth');
      assert.equal(decodes.count, 0);
      await read('fourth', 11);
      await ir.stop('fourth');

      // With the disk cache on, prefetched blocks are kept there too.
      await ir.close();
      ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'), { bootRecordMs: 60_000 });
      await ir.loadSessions();
      await ir.start('j', 'latest', { name: 'fifth' });
      await ir.bootPrefetch('fifth');
      await ir.close();
      ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'), { bootRecordMs: 60_000 });
      await ir.loadSessions();
      await read('fifth', 11);
      assert.equal(ir.cacheStats().disk?.hits, 1, 'block 11, read by the fourth session, was prefetched into the disk cache for the fifth');
    } finally {
      decodes.restore();
      await ir?.close();
      await cleanup();
    }
  },
);

test('boot prefetch: a session that starts a migration leaves the boot list alone (the copy reads every block)', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  let ir: InstantRecovery | undefined;
  try {
    const content = randomBytes(rng(42), 6 * MiB);
    const repo = await repoWithPoint(dir, content, 'j');
    ir = new InstantRecovery(await Repository.open(repo), systemClock, createLogger('error'), { bootRecordMs: 60_000 });
    await ir.start('j', 'latest', { name: 'boot' });
    await ir.session('boot').overlays[0]!.read(4 * MiB, 4096);
    await ir.stop('boot');
    assert.deepEqual(decodeBootList(await readFile(bootListPath(repo, 'j', 0))), [4]);
    await ir.start('j', 'latest', { name: 'moving' });
    await ir.session('moving').overlays[0]!.read(MiB, 4096);
    await ir.migrate('moving', { to: join(dir, 'prod'), format: 'raw', rateBytesPerSec: null, finish: true });
    const copied = (await readdir(join(dir, 'prod'))).filter((n) => n.endsWith('.raw'));
    assert.equal(copied.length, 1, copied.join(', '));
    assert.ok((await readFile(join(dir, 'prod', copied[0]!))).equals(content));
    await ir.stop('moving');
    assert.deepEqual(decodeBootList(await readFile(bootListPath(repo, 'j', 0))), [4]);
  } finally {
    await ir?.close();
    await cleanup();
  }
});
