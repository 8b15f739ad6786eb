/**
 * Loaded into the server by bench:service with BENCH_PROFILE=1 (node
 * --import): every 500 ms one line about the main thread over that interval
 * appended to the file BENCH_LOOP_DELAY_FILE names: wall time (ms), the
 * event-loop delay's p50, p99 and max, the garbage collector's pauses (count,
 * total and longest) and the HTTP requests answered (count, and the p99 and
 * max of the time from their headers parsed to their response finished), all
 * in ms. So the benchmark can tell a request that waited for the event loop
 * or the collector from one that waited elsewhere (the kernel's run queue,
 * the client).
 */
import { subscribe } from 'node:diagnostics_channel';
import { appendFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';

const file = process.env['BENCH_LOOP_DELAY_FILE'];
// Node runs --import modules in every worker thread too: block workers and the data mover block their own loops by design.
if (file !== undefined && isMainThread) {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  let gcCount = 0;
  let gcTotal = 0;
  let gcMax = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcCount += 1;
      gcTotal += e.duration;
      gcMax = Math.max(gcMax, e.duration);
    }
  }).observe({ entryTypes: ['gc'] });
  const started = new WeakMap<IncomingMessage, number>();
  let served: number[] = [];
  subscribe('http.server.request.start', (m) => started.set((m as { request: IncomingMessage }).request, performance.now()));
  subscribe('http.server.response.finish', (m) => {
    const { request } = m as { request: IncomingMessage; response: ServerResponse };
    const t = started.get(request);
    // The list endpoints the benchmark times, not the event streams that follow runs.
    if (t !== undefined && request.method === 'GET' && !(request.url ?? '').includes('/events')) served.push(performance.now() - t);
  });
  setInterval(() => {
    const ms = (n: number) => n.toFixed(1);
    const sorted = served.sort((a, b) => a - b);
    const p99 = sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!;
    appendFileSync(
      file,
      `${Date.now()} ${ms(histogram.percentile(50) / 1e6)} ${ms(histogram.percentile(99) / 1e6)} ${ms(histogram.max / 1e6)}` +
        ` gc ${gcCount} ${ms(gcTotal)} ${ms(gcMax)} req ${sorted.length} ${ms(p99)} ${ms(sorted.at(-1) ?? 0)}\n`,
    );
    histogram.reset();
    gcCount = gcTotal = gcMax = 0;
    served = [];
  }, 500).unref();
}
