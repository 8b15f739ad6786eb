import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planRetention, type PlanChain } from '../src/retention/index.js';

function chain(id: string, firstSeq: number, n: number): PlanChain {
  return { chainId: id, points: Array.from({ length: n }, (_, i) => ({ id: `${id}${firstSeq + i}`, seq: firstSeq + i, createdAt: new Date(Date.UTC(2026, 0, firstSeq + i)).toISOString() })) };
}

test('forward: an old chain goes only when its newest point is out of retention', () => {
  // Chain a: points 1..4, chain b: 5..6. Keep 3 → a4 is outside (newest 3 are b6, b5, a4? no: b6,b5,a4).
  let plan = planRetention([chain('a', 1, 4), chain('b', 5, 2)], { method: 'forward', retainPoints: 3 });
  assert.deepEqual(plan.actions, [], 'a4 is among the newest 3: chain a stays whole');
  assert.equal(plan.kept.find((k) => k.id === 'a1')?.reason, 'full that later points of chain a need');
  plan = planRetention([chain('a', 1, 4), chain('b', 5, 3)], { method: 'forward', retainPoints: 3 });
  assert.equal(plan.actions.length, 1);
  assert.equal(plan.actions[0]!.type, 'delete-chain');
  assert.deepEqual(plan.kept.map((k) => k.id), ['b5', 'b6', 'b7']);
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
  assert.deepEqual(plan.kept.map((k) => k.id), ['a3', 'a4', 'a5', 'a6']);
  for (const k of plan.kept) assert.equal(k.reason, 'among the newest 4 points');
});

test('forever: nothing to do within retention; keep ∪ removed = all', () => {
  const chains = [chain('a', 1, 3)];
  const plan = planRetention(chains, { method: 'forever', retainPoints: 3 });
  assert.deepEqual(plan.actions, []);
  assert.deepEqual(plan.kept.map((k) => k.id), ['a1', 'a2', 'a3']);
});
