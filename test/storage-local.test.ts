// The storage conformance suite (test/storage-conformance.ts) on the local file system.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { localStorage } from '../src/storage/storage.js';
import { storageConformance } from './storage-conformance.js';

storageConformance('local storage', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lfb-storage-'));
  return { storage: localStorage, root: dir, close: () => rm(dir, { recursive: true, force: true }) };
});
