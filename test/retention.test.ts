import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planRetention, type PlanChain } from '../src/retention/index.js';

function chain(id: string, firstSeq: number, n: number): PlanChain {
  return {
    chainId: id,
    points: Array.from({ length: n }, (_, i) => ({
      id: `${id}${firstSeq + i}`,
      seq: firstSeq + i,
      createdAt: new Date(Date.UTC(2026, 0, firstSeq + i)).toISOString(),
    })),
  };
}

test('forward: an old chain goes only when its newest point is out of retention', () => {
  // Chain a: points 1..4, chain b: 5..6. Keep 3 → a4 is outside (newest 3 are b6, b5, a4? no: b6,b5,a4).
  let plan = planRetention([chain('a', 1, 4), chain('b', 5, 2)], { method: 'forward', retainPoints: 3 });
  assert.deepEqual(plan.actions, [], 'a4 is among the newest 3: chain a stays whole');
  assert.equal(plan.kept.find((k) => k.id === 'a1')?.reason, 'full that later points of chain a need');
  plan = planRetention([chain('a', 1, 4), chain('b', 5, 3)], { method: 'forward', retainPoints: 3 });
  assert.equal(plan.actions.length, 1);
  assert.equal(plan.actions[0]!.type, 'delete-chain');
  assert.deepEqual(
    plan.kept.map((k) => k.id),
    ['b5', 'b6', 'b7'],
  );
});

test('forward: the latest chain is never deleted, however long', () => {
  const plan = planRetention([chain('a', 1, 10)], { method: 'forward', retainPoints: 2 });
  assert.deepEqual(plan.actions, []);
  assert.equal(plan.kept.length, 10);
});

test('forever: merges the oldest increments until the points fit', () => {
  const plan = planRetention([chain('a', 1, 6)], { method: 'forever', retainPoints: 4 });
  assert.deepEqual(
    plan.actions.map((a) => (a.type === 'merge' ? `${a.fullPointId}<-${a.incrementPointId}` : a.type)),
    ['a1<-a2', 'a2<-a3'],
  );
  assert.deepEqual(
    plan.kept.map((k) => k.id),
    ['a3', 'a4', 'a5', 'a6'],
  );
  for (const k of plan.kept) assert.equal(k.reason, 'among the newest 4 points');
});

test('forever: nothing to do within retention; keep ∪ removed = all', () => {
  const chains = [chain('a', 1, 3)];
  const plan = planRetention(chains, { method: 'forever', retainPoints: 3 });
  assert.deepEqual(plan.actions, []);
  assert.deepEqual(
    plan.kept.map((k) => k.id),
    ['a1', 'a2', 'a3'],
  );
});

test('forever: a chain on the capacity tier is never merged; it stays whole until its newest point is out, then goes', () => {
  const moved = { ...chain('a', 1, 3), onCapacityTier: true };
  let plan = planRetention([moved, chain('b', 4, 3)], { method: 'forever', retainPoints: 4 });
  assert.deepEqual(plan.actions, [], 'a1 and a2 are out, but merging them would write the moved full');
  assert.match(
    plan.kept.find((k) => k.id === 'a1')!.reason,
    /^on the capacity tier, where a merge cannot write: chain a goes whole once its newest point a3 leaves/,
  );
  assert.equal(plan.kept.find((k) => k.id === 'a3')!.reason, 'among the newest 4 points');
  plan = planRetention([moved, chain('b', 4, 4)], { method: 'forever', retainPoints: 4 });
  assert.deepEqual(
    plan.actions.map((a) => `${a.type} ${a.chainId}`),
    ['delete-chain a'],
  );
  // The latest chain is never kept whole for it (a tier run never moves it): it would grow without end.
  plan = planRetention([chain('b', 1, 3), { ...chain('a', 4, 3), onCapacityTier: true }], { method: 'forever', retainPoints: 2 });
  assert.deepEqual(
    plan.actions.map((a) => `${a.type} ${a.chainId}`),
    ['delete-chain b', 'merge a'],
  );
  // The same chain in the folder merges as before.
  plan = planRetention([chain('a', 1, 3), chain('b', 4, 3)], { method: 'forever', retainPoints: 4 });
  assert.deepEqual(
    plan.actions.map((a) => a.type),
    ['merge', 'merge'],
  );
});

/** Points one a day from 2026-01-(firstDay), at 22:00 UTC. */
function dailyChain(id: string, firstDay: number, n: number, firstSeq = firstDay): PlanChain {
  return {
    chainId: id,
    points: Array.from({ length: n }, (_, i) => ({
      id: `${id}${firstDay + i}`,
      seq: firstSeq + i,
      createdAt: new Date(Date.UTC(2026, 0, firstDay + i, 22)).toISOString(),
    })),
  };
}

test('by days (golden): the last N days plus today, at least 3 points, and the reason for each', () => {
  // Ten daily points, Jan 1..10; planned on Jan 10 at 23:00 with 3 days: Jan 7..10 stay.
  const plan = planRetention([dailyChain('a', 1, 10)], { method: 'forever', retainPoints: 7, retainDays: 3, now: '2026-01-10T23:00:00.000Z' });
  assert.deepEqual(
    plan.actions.map((a) => (a.type === 'merge' ? `${a.fullPointId}<-${a.incrementPointId}: ${a.reason}` : a.type)),
    [1, 2, 3, 4, 5, 6].map((d) => `a${d}<-a${d + 1}: point a${d} is outside the last 3 days; it leaves, the full becomes point a${d + 1}`),
  );
  assert.deepEqual(plan.kept, [
    { id: 'a7', reason: 'created within the last 3 days' },
    { id: 'a8', reason: 'created within the last 3 days' },
    { id: 'a9', reason: 'created within the last 3 days' },
    { id: 'a10', reason: 'created within the last 3 days' },
  ]);
});

test('by days: days without backups count, but the newest 3 points always stay', () => {
  // Points on Jan 1..5, planned on Feb 1: all are old; the newest three stay.
  const plan = planRetention([dailyChain('a', 1, 5)], { method: 'forever', retainPoints: 7, retainDays: 7, now: '2026-02-01T12:00:00.000Z' });
  assert.deepEqual(
    plan.kept.map((k) => `${k.id}: ${k.reason}`),
    [
      'a3: one of the newest 3 points, kept whatever their age',
      'a4: one of the newest 3 points, kept whatever their age',
      'a5: one of the newest 3 points, kept whatever their age',
    ],
  );
});

test('by days, forward: an old chain goes once its newest point is older than the window', () => {
  const chains = [dailyChain('a', 1, 4), dailyChain('b', 5, 4)];
  // On Jan 10 with 3 days the window starts Jan 7: a4 (Jan 4) is out, chain a goes.
  let plan = planRetention(chains, { method: 'forward', retainPoints: 7, retainDays: 3, now: '2026-01-10T08:00:00.000Z' });
  assert.deepEqual(
    plan.actions.map((a) => a.type),
    ['delete-chain'],
  );
  assert.match((plan.actions[0] as { reason: string }).reason, /a4 is outside the last 3 days/);
  assert.deepEqual(
    plan.kept.map((k) => k.id),
    ['b5', 'b6', 'b7', 'b8'],
  );
  assert.equal(plan.kept[0]!.reason, 'full that later points of chain b need');
  // On Jan 7 a4 is within 3 days: the chain stays whole.
  plan = planRetention(chains, { method: 'forward', retainPoints: 7, retainDays: 3, now: '2026-01-07T08:00:00.000Z' });
  assert.deepEqual(plan.actions, []);
});

test('GFS (golden): first full of each week and month flagged, kept for their periods; their increments go, unflagged chains go whole', () => {
  // Ten weekly chains, a full every Monday from 2026-01-05 and increments Tue..Fri.
  const chains: PlanChain[] = Array.from({ length: 10 }, (_, w) => dailyChain(`w${w}-`, 5 + 7 * w, 5));
  const plan = planRetention(chains, { method: 'forward', retainPoints: 3, now: '2026-03-13T23:00:00.000Z', gfs: { weekly: 4, monthly: 2, yearly: 0 } });
  const byChain = new Map(plan.actions.map((a) => [a.chainId, a.type]));
  // January's chains and the unflagged February week go whole.
  for (const w of [0, 1, 2, 3, 5]) assert.equal(byChain.get(`w${w}-`), 'delete-chain', `chain ${w}`);
  // Feb 2 (first of February), Feb 16, Feb 23, Mar 2 (weekly and first of March) keep their full only.
  for (const w of [4, 6, 7, 8]) assert.equal(byChain.get(`w${w}-`), 'delete-increments', `chain ${w}`);
  assert.equal(byChain.has('w9-'), false, 'the latest chain stays whole');
  const reasons = new Map(plan.kept.map((k) => [k.id, k.reason]));
  assert.equal(reasons.get('w4-33'), 'monthly GFS full (2026-02; 2 kept)');
  assert.equal(reasons.get('w6-47'), 'weekly GFS full (week of 2026-02-16; 4 kept)');
  assert.equal(reasons.get('w8-61'), 'weekly GFS full (week of 2026-03-02; 4 kept)');
  assert.deepEqual(
    plan.kept.map((k) => k.id),
    ['w4-33', 'w6-47', 'w7-54', 'w8-61', 'w9-68', 'w9-69', 'w9-70', 'w9-71', 'w9-72'],
  );
});

test('GFS with forever forward: a flagged full is never merged into', () => {
  const plan = planRetention([dailyChain('a', 5, 8)], {
    method: 'forever',
    retainPoints: 3,
    now: '2026-01-12T23:00:00.000Z',
    gfs: { weekly: 2, monthly: 0, yearly: 0 },
  });
  assert.deepEqual(plan.actions, [], 'the full (Jan 5, flagged weekly) blocks every merge');
  assert.equal(plan.kept[0]!.reason, 'weekly GFS full (week of 2026-01-05; 2 kept)');
});
