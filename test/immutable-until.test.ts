// The immutable-until date rule of an immutable repository (pure; docs/design.md §Immutable repositories).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nameFloor, untilOf } from '../src/repository/immutability.js';
import { DAY_MS, immutableUntil } from '../src/repository/immutable-until.js';
import { prng } from '../src/testing/prng.js';

const t = (iso: string): Date => new Date(iso);

test('retention by points: sealing time plus the immutable days', () => {
  assert.equal(
    immutableUntil({ createdAt: t('2026-01-05T10:00:00Z'), sealedAt: t('2026-01-05T10:03:00Z'), immutableDays: 2 }).toISOString(),
    '2026-01-07T10:03:00.000Z',
  );
});

test('a file sealed late (after a crash) counts from when it is sealed; one sealed before its point (clock skew) from its point', () => {
  assert.equal(
    immutableUntil({ createdAt: t('2026-01-05T10:00:00Z'), sealedAt: t('2026-01-06T09:00:00Z'), immutableDays: 1 }).toISOString(),
    '2026-01-07T09:00:00.000Z',
  );
  assert.equal(
    immutableUntil({ createdAt: t('2026-01-05T10:00:00Z'), sealedAt: t('2026-01-05T09:00:00Z'), immutableDays: 1 }).toISOString(),
    '2026-01-06T10:00:00.000Z',
  );
});

test('retention by days: the day the point leaves retention when it is later', () => {
  // Made on Jan 5 with --retain-days 7: kept through Jan 12 (today not counted), leaves at Jan 13 00:00 UTC.
  assert.equal(
    immutableUntil({ createdAt: t('2026-01-05T23:59:00Z'), sealedAt: t('2026-01-05T23:59:30Z'), immutableDays: 2, retainDays: 7 }).toISOString(),
    '2026-01-13T00:00:00.000Z',
  );
  // More immutable days than retention: those win.
  assert.equal(
    immutableUntil({ createdAt: t('2026-01-05T10:00:00Z'), sealedAt: t('2026-01-05T10:00:00Z'), immutableDays: 30, retainDays: 7 }).toISOString(),
    '2026-02-04T10:00:00.000Z',
  );
});

test('the date is never before sealing time plus the days, whatever the inputs', () => {
  const random = prng(18);
  for (let i = 0; i < 1000; i++) {
    const created = Date.UTC(2026, 0, 1) + Math.floor(random() * 400 * DAY_MS);
    const sealed = created + Math.floor(random() * 3 * DAY_MS);
    const days = 1 + Math.floor(random() * 60);
    const retainDays = random() < 0.5 ? undefined : 1 + Math.floor(random() * 60);
    const until = immutableUntil({ createdAt: new Date(created), sealedAt: new Date(sealed), immutableDays: days, retainDays }).getTime();
    assert.ok(until >= sealed + days * DAY_MS);
    if (retainDays !== undefined) {
      // Retention by days keeps the point through day(created) + retainDays: the date is not before the end of that day.
      assert.ok(until >= (Math.floor(created / DAY_MS) + retainDays + 1) * DAY_MS);
    }
  }
});

test("a file's name bounds its date whatever immutable.json says (a back-dated or deleted entry)", () => {
  const name = '20260105T100302Z_d1d62d6a7b69.vib';
  assert.equal(nameFloor(name, 2)?.toISOString(), '2026-01-07T10:03:02.000Z');
  assert.equal(nameFloor('d1d62d6a7b69.vib', 2), undefined);
  const backdated = new Map([[name, t('2000-01-01T00:00:00Z')]]);
  assert.equal(untilOf(backdated, name, 2)?.toISOString(), '2026-01-07T10:03:02.000Z');
  assert.equal(untilOf(new Map(), name, 2)?.toISOString(), '2026-01-07T10:03:02.000Z');
  // A later recorded date (retention by days) stands.
  const later = new Map([[name, t('2026-01-13T00:00:00Z')]]);
  assert.equal(untilOf(later, name, 2)?.toISOString(), '2026-01-13T00:00:00.000Z');
});
