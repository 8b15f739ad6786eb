import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Guestfish, guestfishEnv } from '../src/files/guestfish.js';
import { processAlive } from '../src/core/process-alive.js';
import { isLifeboatError } from '../src/core/errors.js';

// A guestfish server prints its errors on its own standard error (our log file), not on the remote client's: a
// command that failed must still be seen as failed, with guestfish's words. No appliance is booted here.
test('guestfish --remote: a command that fails is failed, with the server’s words; the next command is not blamed for it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lfb-gf-'));
  const gf = await Guestfish.listen(guestfishEnv(dir), join(dir, 'guestfish.log'));
  try {
    const r = await gf.remote('list-devices');
    assert.equal(r.ok, false, 'list-devices before run has failed');
    assert.match(r.stderr, /call launch before using this function/);
    await assert.rejects(
      gf.lines('list-partitions'),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_GUESTFS') && /list-partitions failed: .*launch/s.test((e as Error).message),
    );

    const ok = await gf.remote('get-memsize');
    assert.equal(ok.ok, true, ok.stderr);
    assert.match(ok.stdout, /^\d+\n$/);
    assert.equal(ok.stderr, '');
  } finally {
    await gf.shutdown(undefined);
    await rm(dir, { recursive: true, force: true });
  }
  assert.equal(processAlive(gf.pid), false);
});
