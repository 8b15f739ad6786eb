/**
 * Loaded into the server by bench:service with BENCH_PROFILE=1 (node
 * --import): every 500 ms one line of the main thread's event-loop delay
 * over that interval (wall time in ms, p50, p99 and max delay in ms) appended
 * to the file BENCH_LOOP_DELAY_FILE names, so the benchmark can tell a
 * request that waited for the event loop from one that waited elsewhere.
 */
import { appendFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';

const file = process.env['BENCH_LOOP_DELAY_FILE'];
// Node runs --import modules in every worker thread too: block workers and the data mover block their own loops by design.
if (file !== undefined && isMainThread) {
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  histogram.enable();
  setInterval(() => {
    const ms = (ns: number) => (ns / 1e6).toFixed(1);
    appendFileSync(file, `${Date.now()} ${ms(histogram.percentile(50))} ${ms(histogram.percentile(99))} ${ms(histogram.max)}\n`);
    histogram.reset();
  }, 500).unref();
}
