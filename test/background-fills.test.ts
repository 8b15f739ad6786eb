import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackgroundFills } from '../src/repository/background-fills.js';

interface Done {
  readonly bi: number;
  readonly start: number;
  readonly end: number;
}

/** Fills that each take `ms`, noting when each ran, and (when `reading`) a client that reads every 5 ms until stopped. */
function timedFills(ms: number, reading: boolean): { fills: BackgroundFills; done: Done[]; stopReading: () => Promise<void> } {
  const done: Done[] = [];
  const fills = new BackgroundFills(
    async (bi) => {
      const start = performance.now();
      await sleep(ms);
      done.push({ bi, start, end: performance.now() });
    },
    () => true,
    64,
    64,
  );
  let on = reading;
  const reader = (async () => {
    while (on) {
      fills.noteClientRead();
      await sleep(5);
    }
  })();
  return {
    fills,
    done,
    stopReading: async () => {
      on = false;
      await reader;
    },
  };
}

/** Start and end times of each fill, each taking `ms`. */
async function runFills(blocks: number[], ms: number, clientReading: boolean, prefetch = false): Promise<Done[]> {
  const { fills, done, stopReading } = timedFills(ms, clientReading);
  if (prefetch) await fills.addPrefetch(blocks);
  else {
    for (const bi of blocks) fills.addFill(bi);
    while (done.length < blocks.length) await sleep(5);
  }
  await stopReading();
  return done;
}

const gaps = (d: Done[]): number[] => d.slice(1).map((x, i) => x.start - d[i]!.end);
/** An unpaced gap: well under the 90 ms pause after a 30 ms fill, with room for a busy machine's timer lateness. */
const UNPACED_MS = 60;

test('background fills: while clients read, each fill is followed by a pause three times as long; idle, they run back to back', async () => {
  const busy = gaps(await runFills([1, 2, 3], 30, true));
  assert.ok(
    busy.every((g) => g >= 75),
    `gaps ${busy.map((g) => g.toFixed(0)).join(', ')} ms`,
  );
  const idle = gaps(await runFills([1, 2, 3], 30, false));
  assert.ok(
    idle.every((g) => g < UNPACED_MS),
    `gaps ${idle.map((g) => g.toFixed(0)).join(', ')} ms`,
  );
  // A boot prefetch must stay ahead of the guest: never paced.
  const prefetch = await runFills([1, 2, 3], 30, true, true);
  assert.equal(prefetch.length, 3);
  assert.ok(gaps(prefetch).every((g) => g < UNPACED_MS));
});

test('background fills: a boot prefetch does not wait out the pauses of fills queued before it', async () => {
  const { fills, done, stopReading } = timedFills(30, true);
  const t0 = performance.now();
  for (const bi of [1, 2, 3, 4]) fills.addFill(bi);
  await fills.addPrefetch([100, 101, 102]);
  await stopReading();
  assert.equal(done.length, 7);
  // Fill 1, then the three prefetches during its pause: about 4 x 30 ms; behind the paced fills it would be over 4 x 120 ms.
  const prefetched = done.filter((d) => d.bi >= 100);
  assert.ok(prefetched[2]!.end - t0 < 350, `the prefetch ended ${(prefetched[2]!.end - t0).toFixed(0)} ms after it was queued`);
  assert.ok(done.findIndex((d) => d.bi >= 100) <= 1, `order ${done.map((d) => d.bi).join(',')}`);
});

test('background fills: blocks the disk cache dropped are written paced while clients read (a pause eight times as long), back to back once they pause, after fills and prefetches; the queue is bounded and stop() empties it', async () => {
  const ran: Done[] = [];
  const order: string[] = [];
  const fills = new BackgroundFills(
    async (bi) => {
      order.push(`fill ${bi}`);
      await sleep(5);
    },
    () => true,
    64,
    64,
    async (bi) => {
      order.push(`keep ${bi}`);
      const start = performance.now();
      await sleep(10);
      ran.push({ bi, start, end: performance.now() });
    },
    3,
  );
  // A client reading every 5 ms: each keep (10 ms) is followed by a pause of about 80 ms.
  let reading = true;
  const reader = (async () => {
    while (reading) {
      fills.noteClientRead();
      await sleep(5);
    }
  })();
  for (const bi of [1, 2, 3, 4]) fills.addKeep(bi);
  while (ran.length < 3) await sleep(5);
  reading = false;
  await reader;
  assert.deepEqual(
    ran.map((d) => d.bi),
    [1, 2, 3],
    'the fourth keep was over the bound',
  );
  assert.ok(
    gaps(ran).every((g) => g >= 70),
    `gaps ${gaps(ran)
      .map((g) => g.toFixed(0))
      .join(', ')} ms while the client read`,
  );
  // The client has paused: fills and prefetches first, then the keeps back to back.
  await sleep(150);
  order.length = 0;
  ran.length = 0;
  for (const bi of [5, 6, 7]) fills.addKeep(bi);
  fills.addFill(9);
  await fills.addPrefetch([8]);
  while (ran.length < 3) await sleep(5);
  assert.deepEqual(order, ['fill 9', 'fill 8', 'keep 5', 'keep 6', 'keep 7']);
  assert.ok(
    gaps(ran).every((g) => g < UNPACED_MS),
    `gaps ${gaps(ran)
      .map((g) => g.toFixed(0))
      .join(', ')} ms, idle`,
  );
  // Stopped: what is queued is dropped.
  fills.noteClientRead();
  fills.addKeep(10);
  fills.stop();
  await sleep(200);
  assert.equal(order.length, 5);
});
