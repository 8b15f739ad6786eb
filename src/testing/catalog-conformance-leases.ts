/**
 * The conformance tests of leases: taken when free, renewed by its holder,
 * refused to others until it expires, taken over after, given up; and of
 * several connections asking at once, exactly one gets it
 * (catalog-conformance.ts registers them).
 */
import assert from 'node:assert/strict';
import type { Catalog } from '../catalog/catalog.js';
import { at, rejectsWith, type ConformanceTest } from './catalog-fixtures.js';

const MINUTE = 60_000;

export function leaseConformanceTests(t: ConformanceTest): void {
  t('a lease: taken when free, renewed by its holder, refused to another until it expires, then taken over', async (c) => {
    assert.equal(await c.getLease('scheduler x'), undefined);
    const first = await c.acquireLease('scheduler x', 'host-a', at(0), 2 * MINUTE);
    assert.deepEqual(first, {
      held: true,
      lease: { name: 'scheduler x', holder: 'host-a', acquiredAt: at(0), renewedAt: at(0), expiresAt: at(2) },
      takenFrom: undefined,
    });
    const refused = await c.acquireLease('scheduler x', 'host-b', at(1), 2 * MINUTE);
    assert.equal(refused.held, false);
    assert.deepEqual(refused.lease, first.lease, 'the holder’s lease is unchanged by a refusal');
    const renewed = await c.acquireLease('scheduler x', 'host-a', at(1.5), 2 * MINUTE);
    assert.deepEqual(renewed.lease, { name: 'scheduler x', holder: 'host-a', acquiredAt: at(0), renewedAt: at(1.5), expiresAt: at(3.5) });
    assert.equal(renewed.takenFrom, undefined);
    assert.equal((await c.acquireLease('scheduler x', 'host-b', at(3.4), 2 * MINUTE)).held, false, 'a renewal moves the expiry');
    // Another name is another lease.
    assert.equal((await c.acquireLease('scheduler y', 'host-b', at(3.4), 2 * MINUTE)).held, true);

    const over = await c.acquireLease('scheduler x', 'host-b', at(3.5), 2 * MINUTE);
    assert.equal(over.held, true, 'expired at 3.5: taken at 3.5');
    assert.deepEqual(over.lease, { name: 'scheduler x', holder: 'host-b', acquiredAt: at(3.5), renewedAt: at(3.5), expiresAt: at(5.5) });
    assert.deepEqual(over.takenFrom, renewed.lease, 'the expired lease, with the time its holder last renewed it');
    assert.equal((await c.acquireLease('scheduler x', 'host-a', at(4), 2 * MINUTE)).held, false, 'the old holder has lost it');
    assert.deepEqual(await c.getLease('scheduler x'), over.lease);
  });

  t('a lease given up is free at once, and only its holder can give it up; the next holder learns when', async (c) => {
    await c.acquireLease('scheduler x', 'host-a', at(0), 10 * MINUTE);
    assert.equal(await c.releaseLease('scheduler x', 'host-b', at(1)), false);
    assert.equal((await c.getLease('scheduler x'))?.expiresAt, at(10));
    assert.equal(await c.releaseLease('scheduler x', 'host-a', at(2)), true);
    const given = { name: 'scheduler x', holder: 'host-a', acquiredAt: at(0), renewedAt: at(2), expiresAt: at(2) };
    assert.deepEqual(await c.getLease('scheduler x'), given);
    assert.equal(await c.releaseLease('scheduler x', 'host-a', at(2)), false, 'given up already');
    const next = await c.acquireLease('scheduler x', 'host-b', at(2), 10 * MINUTE);
    assert.equal(next.held, true);
    assert.deepEqual(next.takenFrom, given, 'taken from the one that gave it up, last acting when it did');
  });

  t('a lease is refused without a name, a holder, a time or a ttl', async (c) => {
    await rejectsWith(c.acquireLease('', 'host-a', at(0), MINUTE), 'LFB_ERR_INVALID_ARGUMENT');
    await rejectsWith(c.acquireLease('x', '', at(0), MINUTE), 'LFB_ERR_INVALID_ARGUMENT');
    await rejectsWith(c.acquireLease('x', 'host-a', 'yesterday', MINUTE), 'LFB_ERR_INVALID_ARGUMENT');
    await rejectsWith(c.acquireLease('x', 'host-a', at(0), 0), 'LFB_ERR_INVALID_ARGUMENT');
    await rejectsWith(c.acquireLease('x', 'host-a', at(0), 1.5), 'LFB_ERR_INVALID_ARGUMENT');
  });

  t('of several connections asking for a free or an expired lease at once, exactly one gets it', async (c, openAnother) => {
    const others: Catalog[] = [c];
    for (let i = 0; i < 3; i++) others.push(await openAnother());
    for (const [round, when] of [
      [0, at(0)],
      [1, at(10)],
    ] as const) {
      const attempts = await Promise.all(others.flatMap((o, i) => [0, 1].map((k) => o.acquireLease('scheduler x', `host-${round}-${i}-${k}`, when, MINUTE))));
      const winners = attempts.filter((a) => a.held);
      assert.equal(winners.length, 1, `round ${round}: one holder, not ${winners.map((w) => w.lease.holder).join(', ')}`);
      assert.deepEqual(await c.getLease('scheduler x'), winners[0]!.lease);
      for (const a of attempts) if (!a.held) assert.equal(a.lease.holder, winners[0]!.lease.holder, 'the losers are told who holds it');
    }
  });
}
