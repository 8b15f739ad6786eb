import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fsIdOf, parseGuestPath, pickFs } from '../src/files/paths.js';
import { globMatcher } from '../src/files/glob.js';
import { stringListItem } from '../src/files/guest-fs.js';
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

test('find -name patterns: *, ?, sets, classes, escapes, leading dots, UTF-8', () => {
  const m = (pattern: string, names: string[]): string[] => names.filter(globMatcher(pattern));
  const names = ['a.txt', '.hidden.txt', 'b.conf', 'f1o', 'fxo', 'f/o', '*', 'naïve 文件.txt', 'x-y', 'Z9'];
  assert.deepEqual(m('*.txt', names), ['a.txt', '.hidden.txt', 'naïve 文件.txt']);
  assert.deepEqual(m('f?o', names), ['f1o', 'fxo', 'f/o']);
  assert.deepEqual(m('[!a.]*', names), ['b.conf', 'f1o', 'fxo', 'f/o', '*', 'naïve 文件.txt', 'x-y', 'Z9']);
  assert.deepEqual(m('f[[:digit:]]o', names), ['f1o']);
  assert.deepEqual(m('\\*', names), ['*']);
  assert.deepEqual(m('x[-]y', names), ['x-y']);
  assert.deepEqual(m('[A-Z][0-9]', names), ['Z9']);
  assert.deepEqual(m('na?ve*', names), ['naïve 文件.txt']);
  assert.deepEqual(m('[unclosed', ['[unclosed']), ['[unclosed']);
});

test("guestfish string-list items: quotes, spaces and trailing backslashes survive guestfish's parser", () => {
  assert.equal(stringListItem('a b'), "'a b'");
  assert.equal(stringListItem("it's"), "'it\\'s'");
  assert.equal(stringListItem('back\\'), "'back'\\");
  assert.equal(stringListItem("x\\'y"), "'x\\\\'y'");
});
