import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackgroundFills } from '../src/repository/background-fills.js';

/** Start and end times of each fill, each taking `ms`. */
async function runFills(blocks: number[], ms: number, clientReading: boolean, prefetch = false): Promise<{ start: number; end: number }[]> {
  const times: { start: number; end: number }[] = [];
  const fills = new BackgroundFills(
    async () => {
      const start = performance.now();
      await sleep(ms);
      times.push({ start, end: performance.now() });
    },
    () => true,
    64,
    64,
  );
  let reading = clientReading;
  const reader = (async () => {
    while (reading) {
      fills.noteClientRead();
      await sleep(5);
    }
  })();
  if (prefetch) await fills.addPrefetch(blocks);
  else {
    for (const bi of blocks) fills.addFill(bi);
    while (times.length < blocks.length) await sleep(5);
  }
  reading = false;
  await reader;
  return times;
}

test('background fills: while clients read, each fill is followed by a pause three times as long; idle, they run back to back', async () => {
  const busy = await runFills([1, 2, 3], 30, true);
  for (let i = 1; i < busy.length; i++) assert.ok(busy[i]!.start - busy[i - 1]!.end >= 75, `gap ${busy[i]!.start - busy[i - 1]!.end} ms after fill ${i}`);
  const idle = await runFills([1, 2, 3], 30, false);
  for (let i = 1; i < idle.length; i++) assert.ok(idle[i]!.start - idle[i - 1]!.end < 25, `gap ${idle[i]!.start - idle[i - 1]!.end} ms after fill ${i}`);
  // A boot prefetch must stay ahead of the guest: never paced.
  const prefetch = await runFills([1, 2, 3], 30, true, true);
  assert.equal(prefetch.length, 3);
  for (let i = 1; i < prefetch.length; i++) assert.ok(prefetch[i]!.start - prefetch[i - 1]!.end < 25);
});

test('background fills: a boot prefetch does not wait out the pauses of fills queued before it', async () => {
  const done: { bi: number; end: number }[] = [];
  const fills = new BackgroundFills(
    async (bi) => {
      await sleep(30);
      done.push({ bi, end: performance.now() });
    },
    () => true,
    64,
    64,
  );
  let reading = true;
  const reader = (async () => {
    while (reading) {
      fills.noteClientRead();
      await sleep(5);
    }
  })();
  const t0 = performance.now();
  for (const bi of [1, 2, 3, 4]) fills.addFill(bi);
  await fills.addPrefetch([100, 101, 102]);
  reading = false;
  await reader;
  assert.equal(done.length, 7);
  // Fill 1, then the three prefetches during its pause, then the other fills paced: about 4 x 30 ms, not 4 x 120 ms.
  const prefetched = done.filter((d) => d.bi >= 100);
  assert.ok(prefetched[2]!.end - t0 < 250, `the prefetch ended ${(prefetched[2]!.end - t0).toFixed(0)} ms after it was queued`);
  assert.ok(done.findIndex((d) => d.bi >= 100) <= 1, `order ${done.map((d) => d.bi).join(',')}`);
});
