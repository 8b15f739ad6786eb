// mapLimited: results in order, never more calls at once than the limit, and after a failure nothing more starts and
// the failure waits for the calls in flight. No root, QEMU or ports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { mapLimited } from '../src/core/map-limited.js';

test('results come in the order of the items, with at most the limit in flight', async () => {
  let inFlight = 0;
  let most = 0;
  const got = await mapLimited([5, 1, 4, 2, 3, 0, 6], 3, async (ms) => {
    most = Math.max(most, ++inFlight);
    await sleep(ms);
    inFlight -= 1;
    return ms * 10;
  });
  assert.deepEqual(got, [50, 10, 40, 20, 30, 0, 60]);
  assert.equal(most, 3);
});

test('after a failure no new call starts, and the failure is thrown once the calls in flight have ended', async () => {
  const started: number[] = [];
  const ended: number[] = [];
  const failed = mapLimited([0, 1, 2, 3, 4, 5, 6, 7], 2, async (i) => {
    started.push(i);
    if (i === 1) throw new Error('item 1 failed');
    await sleep(i === 0 ? 30 : 1);
    ended.push(i);
    return i;
  });
  await assert.rejects(failed, /item 1 failed/);
  // Item 0 was in flight when item 1 failed: the rejection came after it ended, and nothing after item 1 started.
  assert.deepEqual(started, [0, 1]);
  assert.deepEqual(ended, [0]);
});
