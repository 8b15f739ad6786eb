/**
 * The conformance tests of the catalog's records beside runs: jobs, points,
 * users, API tokens and console sessions (catalog-conformance.ts registers them).
 */
import assert from 'node:assert/strict';
import type { UserRecord } from '../catalog/catalog.js';
import { at, newRun, point, rejectsWith, token, user, webSession, type ConformanceTest } from './catalog-fixtures.js';

export function recordConformanceTests(t: ConformanceTest): void {
  t('jobs: putJob adds and replaces, listJobs filters by repository, deleteJob forgets the job and its points', async (c) => {
    const job = (repo: string, name: string, retries: number) => ({
      repo,
      name,
      jobId: `${name}-id`,
      definition: { source: `/dev/${name}`, retries, tags: ['a'] },
      updatedAt: at(retries),
    });
    await c.putJob(job('/repos/b', 'web', 1));
    await c.putJob(job('/repos/a', 'web', 1));
    await c.putJob(job('/repos/a', 'db', 1));
    await c.putJob(job('/repos/a', 'web', 3));
    assert.deepEqual(await c.listJobs(), [job('/repos/a', 'db', 1), job('/repos/a', 'web', 3), job('/repos/b', 'web', 1)]);
    assert.deepEqual(await c.listJobs('/repos/b'), [job('/repos/b', 'web', 1)]);
    await c.replacePoints('/repos/a', 'web', [point('web', 1)]);
    await c.deleteJob('/repos/a', 'web');
    assert.deepEqual(await c.listJobs('/repos/a'), [job('/repos/a', 'db', 1)]);
    assert.deepEqual(await c.listPoints('/repos/a', 'web'), []);
    await c.deleteJob('/repos/a', 'nope');
  });

  t('replacePoints replaces one job’s points and no other’s; listPoints orders by seq', async (c) => {
    const first = [point('web', 2, { gfs: ['weekly', 'monthly'] }), point('web', 1)];
    await c.replacePoints('/repos/a', 'web', first);
    await c.replacePoints('/repos/a', 'db', [point('db', 1)]);
    assert.deepEqual(await c.listPoints('/repos/a', 'web'), [first[1], first[0]]);
    const second = Array.from({ length: 600 }, (_, i) =>
      point('web', i + 3, { health: i === 5 ? 'damaged' : 'ok', changeMethod: i === 7 ? null : 'hash', kind: i === 9 ? 'rollback' : 'increment' }),
    );
    await c.replacePoints('/repos/a', 'web', second);
    assert.deepEqual(await c.listPoints('/repos/a', 'web'), second);
    assert.deepEqual(await c.listPoints('/repos/a', 'db'), [point('db', 1)]);
    await c.replacePoints('/repos/a', 'web', []);
    assert.deepEqual(await c.listPoints('/repos/a', 'web'), []);
    await rejectsWith(c.replacePoints('/repos/a', 'web', [point('db', 1)]), 'LFB_ERR_INVALID_ARGUMENT');
  });

  t('two catalogs replacing one job’s points at once leave exactly one of the two sets', async (c, openAnother) => {
    const second = await openAnother();
    const setA = Array.from({ length: 40 }, (_, i) => point('web', i + 1, { file: `a-${i}.lbk` }));
    const setB = Array.from({ length: 30 }, (_, i) => point('web', i + 11, { file: `b-${i}.lbk` }));
    for (let round = 0; round < 5; round++) {
      await Promise.all([c.replacePoints('/repos/a', 'web', setA), second.replacePoints('/repos/a', 'web', setB), c.replacePoints('/repos/a', 'web', setA)]);
      const now = await second.listPoints('/repos/a', 'web');
      assert.ok(
        JSON.stringify(now) === JSON.stringify(setA) || JSON.stringify(now) === JSON.stringify(setB),
        `one whole set, not a mix: ${now.map((p) => p.file).join(' ')}`,
      );
    }
  });

  t('users: add, get, list by name, delete (with their tokens and sessions); a name twice is LFB_ERR_USER_EXISTS', async (c) => {
    await c.addUser(user('zoe', 'viewer'));
    await c.addUser(user('amy', 'admin'));
    await rejectsWith(c.addUser({ ...user('amy', 'viewer'), passwordHash: 'other' }), 'LFB_ERR_USER_EXISTS');
    assert.deepEqual(await c.getUser('amy'), user('amy', 'admin'), 'the first amy is kept');
    assert.equal(await c.getUser('bob'), undefined);
    assert.deepEqual(await c.listUsers(), [user('amy', 'admin'), user('zoe', 'viewer')]);
    await c.addToken(token('t1', 'zoe'));
    await c.addToken(token('t2', 'amy'));
    await c.addWebSession(webSession('s1', 'zoe', 60));
    await c.deleteUser('zoe');
    assert.equal(await c.getUser('zoe'), undefined);
    assert.equal(await c.findToken('hash-t1'), undefined);
    assert.equal(await c.findWebSession('s1'), undefined);
    assert.deepEqual(await c.listTokens(), [token('t2', 'amy')]);
    await rejectsWith(c.deleteUser('zoe'), 'LFB_ERR_USER_NOT_FOUND');
    await rejectsWith(c.addUser({ ...user('eve'), role: 'root' as UserRecord['role'] }), 'LFB_ERR_INVALID_ARGUMENT');
  });

  t('updateUser changes the role or the password hash; a new password ends the console sessions, tokens stay', async (c) => {
    await c.addUser(user('amy', 'viewer'));
    await c.addUser(user('bob', 'viewer'));
    await c.addToken(token('t1', 'amy'));
    await c.addWebSession(webSession('s1', 'amy', 60));
    await c.addWebSession(webSession('s2', 'bob', 60));
    assert.deepEqual(await c.updateUser('amy', { role: 'operator' }), { ...user('amy', 'viewer'), role: 'operator' });
    assert.equal((await c.getUser('amy'))!.role, 'operator');
    assert.notEqual(await c.findWebSession('s1'), undefined, 'a role change keeps the logins (the role is read at each request)');
    const changed = await c.updateUser('amy', { passwordHash: 'new-hash' });
    assert.deepEqual(changed, { ...user('amy', 'viewer'), role: 'operator', passwordHash: 'new-hash' });
    assert.equal((await c.getUser('amy'))!.passwordHash, 'new-hash');
    assert.equal(await c.findWebSession('s1'), undefined, 'a new password ends the console sessions');
    assert.notEqual(await c.findWebSession('s2'), undefined, "another user's are kept");
    assert.deepEqual(await c.findToken('hash-t1'), token('t1', 'amy'), 'API tokens stay');
    assert.equal((await c.getUser('bob'))!.role, 'viewer');
    await rejectsWith(c.updateUser('nobody', { role: 'admin' }), 'LFB_ERR_USER_NOT_FOUND');
    await rejectsWith(c.updateUser('amy', { role: 'root' as UserRecord['role'] }), 'LFB_ERR_INVALID_ARGUMENT');
    assert.equal((await c.getUser('amy'))!.role, 'operator');
  });

  t('tokens: add, find by hash, touch, list by user, delete', async (c) => {
    await c.addUser(user('amy'));
    await c.addUser(user('bob'));
    await c.addToken(token('t2', 'amy', 2));
    await c.addToken(token('t1', 'amy', 1));
    await c.addToken(token('t3', 'bob', 3));
    await rejectsWith(c.addToken(token('t4', 'nobody')), 'LFB_ERR_USER_NOT_FOUND');
    assert.deepEqual(await c.findToken('hash-t2'), token('t2', 'amy', 2));
    assert.equal(await c.findToken('hash-none'), undefined);
    await c.touchToken('t2', at(50));
    assert.equal((await c.findToken('hash-t2'))!.lastUsedAt, at(50));
    assert.deepEqual(
      (await c.listTokens('amy')).map((t) => t.id),
      ['t1', 't2'],
    );
    assert.deepEqual(
      (await c.listTokens()).map((t) => t.id),
      ['t1', 't2', 't3'],
    );
    await c.deleteToken('t2');
    assert.equal(await c.findToken('hash-t2'), undefined);
    assert.deepEqual(
      (await c.listTokens()).map((t) => t.id),
      ['t1', 't3'],
    );
  });

  t('console sessions: add, find, delete, and expired ones go (at their expiry time, not before)', async (c) => {
    await c.addUser(user('amy'));
    await c.addWebSession(webSession('s-old', 'amy', 10));
    await c.addWebSession(webSession('s-edge', 'amy', 20));
    await c.addWebSession(webSession('s-new', 'amy', 30));
    await rejectsWith(c.addWebSession(webSession('s-x', 'nobody', 30)), 'LFB_ERR_USER_NOT_FOUND');
    assert.deepEqual(await c.findWebSession('s-new'), webSession('s-new', 'amy', 30));
    assert.equal(await c.deleteExpiredWebSessions(at(5)), 0);
    assert.equal(await c.deleteExpiredWebSessions(at(20)), 2);
    assert.equal(await c.findWebSession('s-old'), undefined);
    assert.equal(await c.findWebSession('s-edge'), undefined);
    assert.ok(await c.findWebSession('s-new'));
    await c.deleteWebSession('s-new');
    assert.equal(await c.findWebSession('s-new'), undefined);
    assert.equal(await c.deleteExpiredWebSessions(at(1000)), 0);
  });

  t('data written by one catalog is there for the next one opened on the database', async (c, openAnother) => {
    const run = await c.createRun(newRun('web', 0));
    await c.addUser(user('amy'));
    await c.close();
    const again = await openAnother();
    assert.deepEqual(await again.getRun(run.id), run);
    assert.deepEqual(await again.getUser('amy'), user('amy'));
    assert.ok((await again.createRun(newRun('web', 1))).id > run.id);
    await rejectsWith(c.getRun(run.id), 'LFB_ERR_CATALOG');
  });
}
