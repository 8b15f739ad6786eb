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

test('background fills: blocks the disk cache dropped are written only once clients pause, after fills and prefetches; the queue is bounded and stop() empties it', async () => {
  const order: string[] = [];
  const keptAt: number[] = [];
  let lastRead = -Infinity;
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
      keptAt.push(performance.now() - lastRead);
      await sleep(5);
    },
    3,
  );
  const read = (): void => {
    lastRead = performance.now();
    fills.noteClientRead();
  };
  read();
  for (const bi of [1, 2, 3, 4]) fills.addKeep(bi);
  // A client reading every 20 ms for 300 ms: no keep runs meanwhile.
  for (let i = 0; i < 15; i++) {
    await sleep(20);
    read();
  }
  assert.deepEqual(order, [], 'nothing written while the client reads');
  fills.addFill(9);
  await fills.addPrefetch([7]);
  assert.deepEqual(order, ['fill 9', 'fill 7'], 'a prefetch settles without waiting for the keeps');
  while (order.length < 5) await sleep(10);
  assert.deepEqual(order, ['fill 9', 'fill 7', 'keep 1', 'keep 2', 'keep 3'], 'the fourth keep was over the bound');
  assert.ok(
    keptAt.every((ms) => ms >= 95),
    `keeps ran ${keptAt.map((ms) => ms.toFixed(0)).join(', ')} ms after the last read`,
  );
  // Stopped: what is queued is dropped.
  read();
  fills.addKeep(5);
  fills.stop();
  await sleep(200);
  assert.equal(order.length, 5);
});
