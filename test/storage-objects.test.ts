// The storage conformance suite (test/storage-conformance.ts) on files kept as packs and roots (src/objects/object-files.ts)
// in a local object store, with packs of 64 KiB so that the suite's writes flush many of them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalObjectStore } from '../src/objects/local-object-store.js';
import { ObjectFileStorage } from '../src/objects/object-files.js';
import { storageConformance } from './storage-conformance.js';

storageConformance('object files on a local object store', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lfb-storage-objects-'));
  const store = await LocalObjectStore.open(dir);
  return {
    storage: new ObjectFileStorage(store, '/repo', { packBytes: 64 * 1024 }),
    root: '/repo/t',
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
