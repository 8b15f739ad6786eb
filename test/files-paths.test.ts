import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fsIdOf, parseGuestPath, pickFs } from '../src/files/paths.js';
import { isLifeboatError } from '../src/core/errors.js';

test('fs ids: disks in order, partitions, LVs; devices not of the point have none', () => {
  const disks = ['/dev/sda', '/dev/sdb'];
  assert.equal(fsIdOf('/dev/sda', disks), 'disk0');
  assert.equal(fsIdOf('/dev/sda2', disks), 'disk0p2');
  assert.equal(fsIdOf('/dev/sdb11', disks), 'disk1p11');
  assert.equal(fsIdOf('/dev/vg0/root', disks), 'vg0/root');
  assert.equal(fsIdOf('/dev/sdc1', disks), undefined);
  assert.equal(fsIdOf('/dev/mapper/vg0-root', disks), undefined);
});

test('guest paths: <fs id>:/path, a plain /path, normalised without leaving the root', () => {
  assert.deepEqual(parseGuestPath('disk0p2:/etc/fstab'), { fsId: 'disk0p2', path: '/etc/fstab' });
  assert.deepEqual(parseGuestPath('vg0/root:/home/'), { fsId: 'vg0/root', path: '/home' });
  assert.deepEqual(parseGuestPath('disk0p2:'), { fsId: 'disk0p2', path: '/' });
  assert.deepEqual(parseGuestPath('/etc'), { fsId: undefined, path: '/etc' });
  assert.deepEqual(parseGuestPath('disk0:/../../etc/./x//y'), { fsId: 'disk0', path: '/etc/x/y' });
  for (const bad of ['etc/fstab', 'disk0p2:etc', 'bad id:/x', '/a\0b']) {
    assert.throws(
      () => parseGuestPath(bad),
      (e: unknown) => isLifeboatError(e, 'LFB_ERR_INVALID_ARGUMENT'),
      bad,
    );
  }
});

test('the file system of a path: its own id, or the only one; else LFB_ERR_FS_NOT_FOUND', () => {
  assert.equal(pickFs(parseGuestPath('/x'), ['disk0p1']), 'disk0p1');
  assert.equal(pickFs(parseGuestPath('vg0/root:/x'), ['disk0p1', 'vg0/root']), 'vg0/root');
  assert.throws(
    () => pickFs(parseGuestPath('/x'), ['disk0p1', 'disk0p2']),
    (e: unknown) => isLifeboatError(e, 'LFB_ERR_FS_NOT_FOUND'),
  );
  assert.throws(
    () => pickFs(parseGuestPath('disk0p9:/x'), ['disk0p1']),
    (e: unknown) => isLifeboatError(e, 'LFB_ERR_FS_NOT_FOUND'),
  );
});
