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
