import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { systemClock } from '../src/core/clock.js';
import { createLogger } from '../src/core/log.js';
import { InstantRecovery } from '../src/recovery/index.js';
import { Repository } from '../src/repository/index.js';
import { FaultyStorage } from '../src/testing/faulty-storage.js';
import { MiB, randomBytes, repoWithPoint, rng, tempDir } from './helpers.js';

test("instant recovery scans the job and reads the point's backup files through the repository's storage", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const content = randomBytes(rng(21), MiB);
    const repo = await repoWithPoint(dir, content);
    const storage = new FaultyStorage();
    const ir = new InstantRecovery(await Repository.open(repo, { storage }), systemClock, createLogger('error'));
    try {
      await ir.start('vm', 'latest', { name: 's' });
      assert.ok((await ir.session('s').overlays[0]!.read(0, MiB)).equals(content), 'the session serves the point');
      const jobDir = join(repo, 'jobs', 'vm');
      assert.ok(
        storage.calls.some((c) => c.op === 'list' && c.path === jobDir),
        'the job folder was listed through the storage',
      );
      const opened = storage.calls.filter((c) => c.op === 'open' && c.path.startsWith(`${jobDir}/`) && !c.path.endsWith('.json'));
      assert.ok(opened.length > 0, `a backup file was opened through the storage (calls: ${storage.calls.map((c) => `${c.op} ${c.path}`).join(', ')})`);
    } finally {
      await ir.close();
    }
  } finally {
    await cleanup();
  }
});
