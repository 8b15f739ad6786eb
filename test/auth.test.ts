import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openCatalog, type Catalog } from '../src/catalog/index.js';
import type { Clock } from '../src/core/clock.js';
import { isLifeboatError, type ErrorCode } from '../src/core/errors.js';
import {
  addressKey,
  addUser,
  Authenticator,
  canChange,
  createToken,
  deleteUser,
  hashPassword,
  hashQueue,
  LoginRateLimiter,
  loginKeys,
  makeApiToken,
  makeWebSession,
  parseApiToken,
  parsePasswordHash,
  requirePermission,
  revokeToken,
  roleAllows,
  SESSION_COOKIE,
  sessionCookie,
  sha256Hex,
  tokenMatches,
  verifyPassword,
} from '../src/auth/index.js';
import { tempDir } from './helpers.js';

/** A clock the test moves by hand. */
function manualClock(iso = '2026-03-01T10:00:00.000Z'): Clock & { advance(ms: number): void } {
  let t = Date.parse(iso);
  return { now: () => new Date(t), advance: (ms) => (t += ms) };
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isLifeboatError(err), `expected a LifeboatError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

function throwsWith(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (err: unknown) => isLifeboatError(err, code));
}

// Cheap parameters where a test hashes many times; the defaults are tested on their own.
const FAST = { N: 2 ** 10, r: 8, p: 1 };

test('password hashes are self-describing scrypt strings; verification reads the parameters back', async () => {
  const h = await hashPassword('correct horse battery');
  assert.match(h, /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
  assert.equal(await verifyPassword('correct horse battery', h), true);
  assert.equal(await verifyPassword('correct horse batterY', h), false);
  assert.equal(await verifyPassword('', h), false);
  assert.notEqual(await hashPassword('correct horse battery'), h, 'a fresh salt each time');
  // Older (weaker) parameters still verify: they come from the string, not from the defaults.
  const old = await hashPassword('correct horse battery', FAST);
  assert.deepEqual(parsePasswordHash(old).params, FAST);
  assert.equal(await verifyPassword('correct horse battery', old), true);
  // The same password typed composed or decomposed is the same password.
  const composed = await hashPassword('caf\u00e9-caf\u00e9', FAST);
  assert.equal(await verifyPassword('cafe\u0301-cafe\u0301', composed), true);
});

test('passwords under 8 characters or empty are refused; a damaged stored hash is a catalog error', async () => {
  await rejectsWith(hashPassword(''), 'LFB_ERR_INVALID_ARGUMENT');
  await rejectsWith(hashPassword('1234567'), 'LFB_ERR_INVALID_ARGUMENT');
  await rejectsWith(hashPassword('x'.repeat(1025)), 'LFB_ERR_INVALID_ARGUMENT');
  assert.ok((await hashPassword('12345678', FAST)).startsWith('scrypt$1024$'));
  const good = await hashPassword('12345678', FAST);
  const parts = good.split('$');
  for (const bad of [
    '',
    'argon2id$v=19$x',
    good.replace('scrypt', 'bcrypt'),
    [...parts.slice(0, 1), String(2 ** 24), ...parts.slice(2)].join('$'),
    [...parts.slice(0, 1), '1000', ...parts.slice(2)].join('$'),
    parts.slice(0, 5).join('$') + '$',
  ])
    await rejectsWith(verifyPassword('12345678', bad), 'LFB_ERR_CATALOG');
});

test('at most two hashes run at once; the others wait their turn and all finish', async () => {
  const stored = await hashPassword('queue test password', FAST);
  const checks = Array.from({ length: 6 }, (_, i) => verifyPassword(i % 2 === 0 ? 'queue test password' : 'wrong password!', stored));
  assert.deepEqual(hashQueue(), { running: 2, waiting: 4 });
  assert.deepEqual(await Promise.all(checks), [true, false, true, false, true, false]);
  assert.deepEqual(hashQueue(), { running: 0, waiting: 0 });
});

test('API tokens: lfb_<8 hex>_<43 base64url>; only the SHA-256 of the whole token is kept', () => {
  const clock = manualClock();
  const { token, record } = makeApiToken('alice', 'ci', clock);
  assert.match(token, /^lfb_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/);
  const parsed = parseApiToken(token);
  assert.ok(parsed);
  assert.equal(parsed.id, record.id);
  assert.equal(record.hash, sha256Hex(token));
  assert.ok(!JSON.stringify(record).includes(parsed.secret), 'the secret is not in the record');
  assert.equal(record.createdAt, '2026-03-01T10:00:00.000Z');
  assert.equal(tokenMatches(token, record), true);
  assert.equal(tokenMatches(token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'), record), false);
  assert.equal(tokenMatches(token, { ...record, id: '00000000' }), false);
  for (const bad of ['', token + 'x', token.slice(1), token.replace('lfb_', 'LFB_'), token.toUpperCase(), `lfb_${record.id}_${'+'.repeat(43)}`, ` ${token}`])
    assert.equal(parseApiToken(bad), undefined, bad);
  // An id already taken is never handed out again.
  const taken = new Set<string>();
  for (let i = 0; i < 200; i++) taken.add(makeApiToken('alice', '', clock, taken).record.id);
  assert.equal(taken.size, 200);
});

test('console sessions: a random cookie stored as its SHA-256, a CSRF token, 12 hours by default', () => {
  const clock = manualClock();
  const a = makeWebSession('alice', clock);
  const b = makeWebSession('alice', clock, 60_000);
  assert.match(a.cookieValue, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a.cookieValue, b.cookieValue);
  assert.notEqual(a.record.csrfToken, b.record.csrfToken);
  assert.equal(a.record.idHash, sha256Hex(a.cookieValue));
  assert.equal(a.record.expiresAt, '2026-03-01T22:00:00.000Z');
  assert.equal(b.record.expiresAt, '2026-03-01T10:01:00.000Z');
  const cookie = sessionCookie({ sessionId: a.cookieValue, expiresAt: a.record.expiresAt }, { secure: true, now: clock.now() });
  assert.equal(cookie, `${SESSION_COOKIE}=${a.cookieValue}; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict; Secure`);
});

test('rate limits: 5 failures lock a key for 30 s, each further failure doubles it; success clears', () => {
  const clock = manualClock();
  const limiter = new LoginRateLimiter(clock);
  const keys = loginKeys('192.0.2.7', 'alice');
  const retryAfter = (): number | undefined => {
    try {
      limiter.check(keys);
      return undefined;
    } catch (err) {
      assert.ok(isLifeboatError(err, 'LFB_ERR_RATE_LIMITED'));
      return err.details['retryAfterSeconds'] as number;
    }
  };
  for (let i = 0; i < 4; i++) limiter.recordFailure(keys);
  assert.equal(retryAfter(), undefined);
  limiter.recordFailure(keys);
  assert.equal(retryAfter(), 30);
  clock.advance(29_500);
  assert.equal(retryAfter(), 1);
  clock.advance(500);
  assert.equal(retryAfter(), undefined);
  limiter.recordFailure(keys);
  assert.equal(retryAfter(), 60);
  clock.advance(60_000);
  limiter.recordFailure(keys);
  assert.equal(retryAfter(), 120);
  // The cap: 15 minutes.
  for (let i = 0; i < 20; i++) limiter.recordFailure(keys);
  assert.equal(retryAfter(), 900);
  clock.advance(900_000);
  limiter.recordSuccess(keys);
  for (let i = 0; i < 4; i++) limiter.recordFailure(keys);
  assert.equal(retryAfter(), undefined, 'a success starts the count again');

  // The user name is limited whatever the address, and the address whatever the name.
  const byName = new LoginRateLimiter(clock);
  for (let i = 0; i < 5; i++) byName.recordFailure(loginKeys(`198.51.100.${i}`, 'bob'));
  throwsWith(() => byName.check(loginKeys('203.0.113.1', 'BOB')), 'LFB_ERR_RATE_LIMITED');
  byName.check(loginKeys('203.0.113.1', 'carol'));
  for (let i = 0; i < 5; i++) byName.recordFailure(loginKeys('203.0.113.9', `user${i}`));
  throwsWith(() => byName.check(loginKeys('203.0.113.9', 'dave')), 'LFB_ERR_RATE_LIMITED');

  // Quiet keys are forgotten after 30 minutes.
  const quiet = new LoginRateLimiter(clock);
  for (let i = 0; i < 4; i++) quiet.recordFailure(keys);
  clock.advance(30 * 60_000);
  quiet.recordFailure(keys);
  quiet.check(keys);
});

test('rate limits: the table holds at most maxKeys keys, dropping the least recently failed', () => {
  const clock = manualClock();
  const limiter = new LoginRateLimiter(clock, { maxKeys: 100 });
  for (let i = 0; i < 5; i++) limiter.recordFailure(['addr:locked']);
  throwsWith(() => limiter.check(['addr:locked']), 'LFB_ERR_RATE_LIMITED');
  for (let i = 0; i < 99; i++) limiter.recordFailure([`addr:${i}`]);
  assert.equal(limiter.size, 100);
  throwsWith(() => limiter.check(['addr:locked']), 'LFB_ERR_RATE_LIMITED');
  for (let i = 0; i < 10_000; i++) limiter.recordFailure([`addr:flood${i}`]);
  assert.equal(limiter.size, 100);
  limiter.check(['addr:locked']);
});

test('addresses are counted per IPv4 address and per IPv6 /64', () => {
  assert.equal(addressKey('192.0.2.1'), '192.0.2.1');
  assert.equal(addressKey('::ffff:192.0.2.1'), '192.0.2.1');
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:0db8:0001:0002::9'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
});

test('roles: viewers read, operators operate, admins administer, movers only move', () => {
  assert.deepEqual(
    (['viewer', 'operator', 'admin', 'mover', 'root'] as const).map((r) => [
      roleAllows(r, 'read'),
      roleAllows(r, 'operate'),
      roleAllows(r, 'administer'),
      roleAllows(r, 'move'),
      canChange(r),
    ]),
    [
      [true, false, false, false, false],
      [true, true, false, true, true],
      [true, true, true, true, true],
      [false, false, false, true, false],
      [false, false, false, false, false],
    ],
  );
  throwsWith(() => requirePermission({ user: 'm', role: 'mover' }, 'read'), 'LFB_ERR_FORBIDDEN');
  throwsWith(() => requirePermission({ user: 'v', role: 'viewer' }, 'operate'), 'LFB_ERR_FORBIDDEN');
  throwsWith(() => requirePermission({ user: 'o', role: 'operator' }, 'administer'), 'LFB_ERR_FORBIDDEN');
  requirePermission({ user: 'a', role: 'admin' }, 'administer');
});

/** The catalogs the authenticator is tested over (the conformance suite holds them to one contract). */
const CATALOGS: { name: string; open: () => Promise<Catalog> }[] = [
  {
    name: 'SQLite',
    open: async () => {
      const { dir, cleanup } = await tempDir();
      const catalog = await openCatalog(dir);
      const closeCatalog = catalog.close.bind(catalog);
      return Object.assign(catalog, {
        close: async () => {
          await closeCatalog();
          await cleanup();
        },
      });
    },
  },
];

for (const { name, open } of CATALOGS) {
  test(`authenticator (${name} catalog): bearer tokens`, async () => {
    const catalog = await open();
    try {
      const clock = manualClock();
      const auth = new Authenticator(catalog, { clock });
      await addUser(catalog, 'alice', 'operator', 'alice password', clock, FAST);
      const { token, record } = await createToken(catalog, 'alice', 'ci', clock);
      const who = await auth.authenticate({ authorization: `Bearer ${token}` }, 'POST');
      assert.deepEqual(who, { user: 'alice', role: 'operator', via: 'token', tokenId: record.id });
      // A token needs no CSRF header: browsers never send one on their own.
      assert.equal((await auth.authenticate({ authorization: `bearer  ${token}` }, 'DELETE')).user, 'alice');

      const refused = async (authorization: string | string[] | undefined, cookie?: string): Promise<void> =>
        rejectsWith(auth.authenticate({ authorization, cookie }, 'GET'), 'LFB_ERR_UNAUTHENTICATED');
      await refused(undefined);
      await refused(token);
      await refused(`Basic ${Buffer.from(`alice:${token}`).toString('base64')}`);
      await refused(`Bearer ${token.slice(0, -2)}xx`);
      await refused(`Bearer ${makeApiToken('alice', '', clock).token}`);
      await refused([`Bearer ${token}`, `Bearer ${token}`]);
      // A bad Authorization header does not fall back to a cookie.
      const login = await auth.login('alice', 'alice password', '192.0.2.1');
      await refused('Bearer nonsense', `${SESSION_COOKIE}=${login.sessionId}`);

      await revokeToken(catalog, record.id);
      await refused(`Bearer ${token}`);
      await rejectsWith(revokeToken(catalog, record.id), 'LFB_ERR_TOKEN_NOT_FOUND');
    } finally {
      await catalog.close();
    }
  });

  test(`authenticator (${name} catalog): a token's last use is recorded at most once a minute`, async () => {
    const catalog = await open();
    try {
      const clock = manualClock();
      const auth = new Authenticator(catalog, { clock });
      await addUser(catalog, 'alice', 'viewer', 'alice password', clock, FAST);
      const { token, record } = await createToken(catalog, 'alice', '', clock);
      const lastUsed = async (): Promise<string | null> => (await catalog.listTokens('alice')).find((t) => t.id === record.id)!.lastUsedAt;
      await auth.authenticate({ authorization: `Bearer ${token}` }, 'GET');
      assert.equal(await lastUsed(), '2026-03-01T10:00:00.000Z');
      clock.advance(30_000);
      await auth.authenticate({ authorization: `Bearer ${token}` }, 'GET');
      assert.equal(await lastUsed(), '2026-03-01T10:00:00.000Z');
      clock.advance(30_000);
      await auth.authenticate({ authorization: `Bearer ${token}` }, 'GET');
      assert.equal(await lastUsed(), '2026-03-01T10:01:00.000Z');
    } finally {
      await catalog.close();
    }
  });

  test(`authenticator (${name} catalog): console sessions, CSRF, expiry and logout`, async () => {
    const catalog = await open();
    try {
      const clock = manualClock();
      const auth = new Authenticator(catalog, { clock, sessionTtlMs: 3600_000 });
      await addUser(catalog, 'vera', 'viewer', 'vera password', clock, FAST);
      const login = await auth.login('vera', 'vera password', '192.0.2.1');
      assert.equal(login.role, 'viewer');
      assert.equal(login.expiresAt, '2026-03-01T11:00:00.000Z');
      const cookie = `theme=dark; ${SESSION_COOKIE}=${login.sessionId}; other=1`;
      const who = await auth.authenticate({ cookie }, 'GET');
      assert.deepEqual(who, { user: 'vera', role: 'viewer', via: 'cookie', session: { csrfToken: login.csrfToken, expiresAt: login.expiresAt } });
      // A change through the cookie needs the session's CSRF header.
      await rejectsWith(auth.authenticate({ cookie }, 'POST'), 'LFB_ERR_FORBIDDEN');
      await rejectsWith(auth.authenticate({ cookie, 'x-csrf-token': login.csrfToken.slice(1) }, 'POST'), 'LFB_ERR_FORBIDDEN');
      await rejectsWith(auth.authenticate({ cookie, 'x-csrf-token': [login.csrfToken, login.csrfToken] }, 'POST'), 'LFB_ERR_UNAUTHENTICATED');
      assert.equal((await auth.authenticate({ cookie, 'x-csrf-token': login.csrfToken }, 'POST')).via, 'cookie');
      // Nothing of the cookie's value is stored.
      assert.equal(JSON.stringify(await catalog.findWebSession(sha256Hex(login.sessionId))).includes(login.sessionId), false);
      for (const bad of [`${SESSION_COOKIE}=`, `${SESSION_COOKIE}=${login.sessionId}x`, `${SESSION_COOKIE}=${makeWebSession('vera', clock).cookieValue}`])
        await rejectsWith(auth.authenticate({ cookie: bad }, 'GET'), 'LFB_ERR_UNAUTHENTICATED');

      clock.advance(3600_000);
      await rejectsWith(auth.authenticate({ cookie }, 'GET'), 'LFB_ERR_UNAUTHENTICATED');
      assert.equal(await catalog.findWebSession(sha256Hex(login.sessionId)), undefined, 'an expired session is removed when seen');

      const again = await auth.login('vera', 'vera password', '192.0.2.1');
      const cookie2 = `${SESSION_COOKIE}=${again.sessionId}`;
      await auth.authenticate({ cookie: cookie2 }, 'GET');
      await auth.logout(cookie2);
      await auth.logout(cookie2);
      await rejectsWith(auth.authenticate({ cookie: cookie2 }, 'GET'), 'LFB_ERR_UNAUTHENTICATED');
    } finally {
      await catalog.close();
    }
  });

  test(`authenticator (${name} catalog): a deleted user's tokens and sessions stop working, also when the name is added again`, async () => {
    const catalog = await open();
    try {
      const clock = manualClock();
      const auth = new Authenticator(catalog, { clock });
      await addUser(catalog, 'olga', 'admin', 'olga password', clock, FAST);
      await rejectsWith(addUser(catalog, 'olga', 'viewer', 'olga password', clock, FAST), 'LFB_ERR_USER_EXISTS');
      await rejectsWith(addUser(catalog, 'bad name', 'viewer', 'olga password', clock, FAST), 'LFB_ERR_INVALID_ARGUMENT');
      await rejectsWith(addUser(catalog, 'olga2', 'root', 'olga password', clock, FAST), 'LFB_ERR_INVALID_ARGUMENT');
      await rejectsWith(addUser(catalog, 'olga2', 'viewer', 'short', clock, FAST), 'LFB_ERR_INVALID_ARGUMENT');
      const { token } = await createToken(catalog, 'olga', '', clock);
      const login = await auth.login('olga', 'olga password', '192.0.2.1');
      const cookie = `${SESSION_COOKIE}=${login.sessionId}`;
      clock.advance(1000);
      assert.deepEqual(await deleteUser(catalog, 'olga'), { tokensRevoked: 1 });
      await rejectsWith(deleteUser(catalog, 'olga'), 'LFB_ERR_USER_NOT_FOUND');
      await rejectsWith(auth.authenticate({ cookie }, 'GET'), 'LFB_ERR_UNAUTHENTICATED');
      await rejectsWith(createToken(catalog, 'olga', '', clock), 'LFB_ERR_USER_NOT_FOUND');
      await addUser(catalog, 'olga', 'admin', 'new olga password', clock, FAST);
      await rejectsWith(auth.authenticate({ cookie }, 'GET'), 'LFB_ERR_UNAUTHENTICATED');
      await rejectsWith(auth.authenticate({ authorization: `Bearer ${token}` }, 'GET'), 'LFB_ERR_UNAUTHENTICATED');
    } finally {
      await catalog.close();
    }
  });

  test(`authenticator (${name} catalog): failed logins say nothing about the name and are rate limited`, async () => {
    const catalog = await open();
    try {
      const clock = manualClock();
      const auth = new Authenticator(catalog, { clock });
      await addUser(catalog, 'alice', 'admin', 'alice password', clock, FAST);
      const messages = new Set<string>();
      for (const [n, p] of [
        ['alice', 'wrong password'],
        ['nobody', 'alice password'],
        ['', ''],
        ['x'.repeat(10_000), 'y'.repeat(100_000)],
      ] as const)
        await assert.rejects(auth.login(n, p, `192.0.2.${messages.size + 10}`), (err: unknown) => {
          assert.ok(isLifeboatError(err, 'LFB_ERR_UNAUTHENTICATED'));
          messages.add(err.message);
          return true;
        });
      assert.equal(messages.size, 1, 'one message for a wrong name and a wrong password');

      // Five failures for alice from several addresses: the sixth is refused even with the right password.
      for (let i = 0; i < 4; i++) await rejectsWith(auth.login('alice', 'wrong password', `198.51.100.${i}`), 'LFB_ERR_UNAUTHENTICATED');
      await rejectsWith(auth.login('alice', 'alice password', '203.0.113.5'), 'LFB_ERR_RATE_LIMITED');
      clock.advance(30_000);
      const ok = await auth.login('alice', 'alice password', '203.0.113.5');
      assert.equal(ok.user, 'alice');

      // Parallel guesses cannot all slip in before the first failure is counted.
      const results = await Promise.allSettled(Array.from({ length: 12 }, () => auth.login('alice', 'wrong password', '203.0.113.77')));
      const codes = results.map((r) => (r.status === 'rejected' && isLifeboatError(r.reason) ? r.reason.code : 'ok'));
      assert.equal(codes.filter((c) => c === 'LFB_ERR_UNAUTHENTICATED').length, 5, codes.join());
      assert.equal(codes.filter((c) => c === 'LFB_ERR_RATE_LIMITED').length, 7, codes.join());
    } finally {
      await catalog.close();
    }
  });
}

test(`the default hash takes tens of milliseconds: slow enough to guess slowly, fast enough to log in`, async () => {
  const started = process.hrtime.bigint();
  const h = await hashPassword('measure this password');
  assert.equal(await verifyPassword('measure this password', h), true);
  const ms = Number(process.hrtime.bigint() - started) / 2e6;
  // Printed for docs/design.md; bounds wide enough for a loaded CI machine.
  console.log(`scrypt N=2^15 r=8 p=1: ${ms.toFixed(1)} ms per hash`);
  assert.ok(ms > 5 && ms < 2000, `${ms} ms`);
});
