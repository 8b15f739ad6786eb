/**
 * The repository's capacity over time as a uPlot chart: what its backup
 * files take and the file system's size. Loaded only by the dashboard (a
 * dynamic import: uPlot is a chunk of its own).
 */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { bytes } from '../format';
import type { UsageSample } from '../api-types';

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

export function CapacityChart({ samples, label }: { samples: UsageSample[]; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el || samples.length === 0) return;
    const xs = samples.map((s) => Date.parse(s.at) / 1000);
    const used = samples.map((s) => s.bytes);
    const taken = samples.map((s) => s.totalBytes - s.freeBytes);
    const total = samples.map((s) => s.totalBytes);
    const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--border'), width: 1 }, ticks: { stroke: cssVar('--border') } };
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height: 220,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.05] } },
      axes: [axis, { ...axis, size: 70, values: (_u, ticks) => ticks.map((t) => bytes(t)) }],
      series: [
        {},
        { label: 'backup files', stroke: cssVar('--accent'), width: 2, fill: 'rgba(90,162,240,0.15)', value: (_u, v) => bytes(v) },
        { label: 'file system used', stroke: cssVar('--warn'), width: 1.5, value: (_u, v) => bytes(v) },
        { label: 'file system size', stroke: cssVar('--bad'), width: 1, dash: [6, 4], value: (_u, v) => bytes(v) },
      ],
      // One sample draws as a point; more as lines.
      ...(samples.length === 1 ? { cursor: { show: false } } : {}),
    };
    const plot = new uPlot(opts, [xs, used, taken, total], el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [samples]);
  return <div class="chart" ref={box} role="img" aria-label={label} />;
}
