import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CowOverlay, ZeroDisk } from '../src/blockdev/index.js';
import { NFS3ERR_ROFS, nfsStatusOf } from '../src/nfs/index.js';
import { NBD_EPERM, nbdErrorOf } from '../src/nbd/index.js';
import { SessionClients } from '../src/recovery/session-clients.js';
import { encodeHandle, KIND_DISK, KIND_SESSION } from '../src/recovery/datastore-handles.js';
import { tempDir } from './helpers.js';

test('a sealed overlay waits for the writes under way, refuses later ones as read-only (NFS3ERR_ROFS, NBD EPERM), and unseals', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const ov = await CowOverlay.open(new ZeroDisk(1024 * 1024), join(dir, 'ov'));
    const underWay = ov.write(0, Buffer.alloc(65536, 1));
    await ov.seal('migrating');
    // The write under way landed before seal() resolved.
    await underWay;
    assert.equal((await ov.read(0, 1))[0], 1);
    const refused = await ov.write(65536, Buffer.alloc(512, 2)).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(refused instanceof Error, 'a write after seal() is refused');
    assert.equal(nfsStatusOf(refused), NFS3ERR_ROFS);
    assert.equal(nbdErrorOf(refused), NBD_EPERM);
    assert.equal((await ov.read(65536, 1))[0], 0);
    await ov.flush();
    ov.unseal();
    await ov.write(65536, Buffer.alloc(512, 2));
    assert.equal((await ov.read(65536, 1))[0], 2);
    await ov.close();
  } finally {
    await cleanup();
  }
});

test('NFS clients count as attached to a session for a minute after their last call on one of its disks, and memory per session is bounded', () => {
  let now = Date.parse('2026-12-02T00:00:00Z');
  const clients = new SessionClients({ now: () => new Date(now) } as never);
  const id = '0123456789abcdef0123456789abcdef';
  clients.track(id, 's', ['sys', 'data']);
  const key = Buffer.from(id, 'hex');
  clients.noteNfsCall(encodeHandle(KIND_SESSION, key, 0n), '10.0.0.1'); // the folder: not a disk
  clients.noteNfsCall(Buffer.from('garbage'), '10.0.0.2');
  assert.deepEqual(clients.list('s'), []);
  clients.noteNfsCall(encodeHandle(KIND_DISK, key, 1n), '10.0.0.3');
  assert.deepEqual(
    clients.list('s').map((c) => [c.protocol, c.client, c.disk]),
    [['nfs', '10.0.0.3', 'data']],
  );
  now += 59_000;
  assert.equal(clients.list('s').length, 1);
  now += 2_000;
  assert.deepEqual(clients.list('s'), []);
  for (let i = 0; i < 1000; i++) clients.noteNfsCall(encodeHandle(KIND_DISK, key, 0n), `10.1.${i >> 8}.${i & 255}`);
  assert.equal(clients.list('s').length, 64);
  clients.forget(id);
  assert.deepEqual(clients.list('s'), []);
});
