/**
 * A file-level recovery request that is still finding its point (a scan of
 * the job) when the server begins to stop gets LFB_ERR_SERVER_NOT_RUNNING,
 * and no session is opened after the server closed its sessions (before, it
 * went on to boot an appliance and hold the point, and nothing would have
 * closed either). In process; no root (the appliance is never started).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock } from '../src/core/clock.js';
import { isLifeboatError } from '../src/core/errors.js';
import type { Logger } from '../src/core/log.js';
import { FileSessions } from '../src/service/file-sessions.js';
import { cli, MiB, randomBytes, rng, tempDir } from './helpers.js';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

test('a request that is finding its point when the server stops is refused, and opens no session', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir();
  const sessions = new FileSessions({ clock: systemClock, logger: quiet });
  try {
    const repo = join(dir, 'repo');
    await writeFile(join(dir, 'vm.img'), randomBytes(rng(5), MiB));
    for (const args of [
      ['repo', 'init', repo],
      ['job', 'create', 'vm', '--repo', repo, '--disk', join(dir, 'vm.img')],
      ['backup', 'vm', '--repo', repo],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 0, r.stderr);
    }
    const asked = sessions.acquire('repo', repo, 'vm', 'latest');
    await sessions.closeAll();
    const err = await asked.then(
      () => assert.fail('a session was opened after the server closed its sessions'),
      (e: unknown) => e,
    );
    assert.ok(isLifeboatError(err, 'LFB_ERR_SERVER_NOT_RUNNING'), String(err));
    assert.deepEqual(sessions.list(), []);
  } finally {
    await sessions.closeAll();
    await cleanup();
  }
});
