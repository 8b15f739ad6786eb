/**
 * The repository's capacity over time as a uPlot chart: what its backup
 * files take and the file system's size. Loaded only by the dashboard (a
 * dynamic import: uPlot is a chunk of its own).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { bytes } from '../format';
import type { UsageSample } from '../api-types';

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

const DARK = '(prefers-color-scheme: dark)';

/** Whether the system asks for dark colours now (changes while the page is open). */
function useDark(): boolean {
  const [dark, setDark] = useState(() => matchMedia(DARK).matches);
  useEffect(() => {
    const mq = matchMedia(DARK);
    const on = (e: MediaQueryListEvent): void => setDark(e.matches);
    mq.addEventListener('change', on);
    return () => mq.removeEventListener('change', on);
  }, []);
  return dark;
}

export function CapacityChart({ samples, label }: { samples: UsageSample[]; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  // The canvas is drawn in the colours of the moment: drawn again when the system switches between light and dark.
  const dark = useDark();
  useEffect(() => {
    const el = box.current;
    if (!el || samples.length === 0) return;
    const xs = samples.map((s) => Date.parse(s.at) / 1000);
    const used = samples.map((s) => s.bytes);
    const taken = samples.map((s) => s.totalBytes - s.freeBytes);
    const total = samples.map((s) => s.totalBytes);
    const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--border'), width: 1 }, ticks: { stroke: cssVar('--border') } };
    const fromZero = (_u: uPlot, _min: number, max: number): uPlot.Range.MinMax => [0, Math.max(1, max) * 1.05];
    // Two scales: the backup files on the left (small beside a big file system), the file system on the right.
    const scheme = dark ? 'dark' : 'light';
    const opts: uPlot.Options = {
      // data-drawn says which colours the canvas holds now: data-scheme changes at render, the canvas only when this effect has drawn.
      hooks: { draw: [() => (el.dataset['drawn'] = scheme)] },
      width: Math.max(280, el.clientWidth),
      height: 220,
      scales: {
        // A single sample (a new server) gets an hour before it, so it is not drawn on an axis of years.
        x: { time: true, range: (_u, min, max) => (max - min < 60 ? [min - 3600, max + 60] : [min, max]) },
        files: { range: fromZero },
        fs: { range: fromZero },
      },
      axes: [
        axis,
        { ...axis, scale: 'files', size: 70, values: (_u, ticks) => ticks.map((t) => bytes(t)) },
        { ...axis, scale: 'fs', side: 1, size: 70, grid: { show: false }, values: (_u, ticks) => ticks.map((t) => bytes(t)) },
      ],
      series: [
        {},
        { label: 'backup files', scale: 'files', stroke: cssVar('--accent'), width: 2, value: (_u, v) => bytes(v) },
        { label: 'file system used', scale: 'fs', stroke: cssVar('--warn'), width: 1.5, value: (_u, v) => bytes(v) },
        { label: 'file system size', scale: 'fs', stroke: cssVar('--bad'), width: 1, dash: [6, 4], value: (_u, v) => bytes(v) },
      ],
    };
    const plot = new uPlot(opts, [xs, used, taken, total], el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [samples, dark]);
  return <div class="chart" ref={box} role="img" aria-label={label} data-scheme={dark ? 'dark' : 'light'} />;
}
