/**
 * A job's restore points as a timeline of its chains, drawn in SVG: one
 * column per point (oldest left), fulls as squares, increments as circles,
 * rollbacks as diamonds, each mark's area by the bytes its file stores,
 * GFS flags (W, M, Y) above, damaged points red, unavailable ones dashed.
 * Only the columns in view are drawn, so a job with hundreds of points
 * scrolls as fast as one with ten.
 *
 * It is one keyboard stop (a listbox): arrows, Home, End, Page Up/Down move
 * the selection, Enter opens the restore page of the selected point. The
 * card under it describes the point hovered or selected; the table below
 * the timeline says the same for screen readers.
 */
import type { JSX } from 'preact';
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { GFS_LETTER, chainSpans, short, type Point } from './model';

/** A column's width: wider when few points fill the view, never narrower than this. */
const MIN_COL = 28;
const MAX_COL = 72;
const HEIGHT = 150;
const MARK_Y = 80;
/** The lowest GFS letter's baseline: just above the largest mark; more letters stack upwards, below the chain's label. */
const GFS_Y = MARK_Y - 17;
const AXIS_Y = 136;
/** Columns drawn beyond each edge of the view, so a fast scroll shows no gap. */
const OVERSCAN = 8;
/** Room a time label needs on the axis, px. */
const LABEL_PX = 96;

function radius(stored: number | null, max: number): number {
  if (stored === null || max <= 0) return 4;
  return 3 + 9 * Math.sqrt(Math.max(0, stored) / max);
}

function Mark({ p, x, r }: { p: Point; x: number; r: number }) {
  const cls = `tl-mark tl-${p.kind} tl-${p.health}`;
  if (p.kind === 'full') return <rect class={cls} x={x - r} y={MARK_Y - r} width={2 * r} height={2 * r} rx={2} />;
  if (p.kind === 'rollback') return <path class={cls} d={`M${x} ${MARK_Y - r - 2}L${x + r + 2} ${MARK_Y}L${x} ${MARK_Y + r + 2}L${x - r - 2} ${MARK_Y}Z`} />;
  return <circle class={cls} cx={x} cy={MARK_Y} r={r} />;
}

const labelOf = (iso: string): string =>
  new Date(iso).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false });

export function Timeline({
  points,
  selected,
  onSelect,
  onHover,
  onOpen,
  describe,
}: {
  points: readonly Point[];
  selected: number;
  onSelect: (index: number) => void;
  onHover: (index: number | null) => void;
  /** Enter on the selected point (or a double click): the restore page. */
  onOpen: (index: number) => void;
  /** What a screen reader says of a point. */
  describe: (index: number) => string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [view, setView] = useState({ left: 0, width: 1280 });
  const spans = useMemo(() => chainSpans(points), [points]);
  const maxStored = useMemo(() => points.reduce((m, p) => Math.max(m, p.storedBytes ?? 0), 0), [points]);
  const COL = Math.min(MAX_COL, Math.max(MIN_COL, Math.floor(view.width / Math.max(points.length, 1))));
  const labelEvery = Math.ceil(LABEL_PX / COL);
  const width = Math.max(points.length * COL, 1);

  // Start at the newest points (the right end); follow the box's width.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    el.scrollLeft = el.scrollWidth;
    setView({ left: el.scrollLeft, width: el.clientWidth });
    const ro = new ResizeObserver(() => setView({ left: el.scrollLeft, width: el.clientWidth }));
    ro.observe(el);
    return () => ro.disconnect();
  }, [points]);

  // Keep the selected point in view when the keyboard moves it.
  useEffect(() => {
    const el = box.current;
    if (!el || selected < 0) return;
    const x = selected * COL;
    if (x < el.scrollLeft) el.scrollLeft = x;
    else if (x + COL > el.scrollLeft + el.clientWidth) el.scrollLeft = x + COL - el.clientWidth;
  }, [selected, COL]);

  const first = Math.max(0, Math.floor(view.left / COL) - OVERSCAN);
  const last = Math.min(points.length - 1, Math.ceil((view.left + view.width) / COL) + OVERSCAN);
  const shown: number[] = [];
  for (let i = first; i <= last; i++) shown.push(i);

  const onKeyDown = (e: KeyboardEvent): void => {
    const n = points.length;
    if (n === 0) return;
    const step: Record<string, number> = { ArrowLeft: -1, ArrowRight: 1, PageUp: -10, PageDown: 10 };
    let next: number | undefined;
    if (e.key in step) next = Math.min(n - 1, Math.max(0, (selected < 0 ? n - 1 : selected) + step[e.key]!));
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = n - 1;
    else if (e.key === 'Enter' && selected >= 0) {
      e.preventDefault();
      onOpen(selected);
      return;
    }
    if (next !== undefined) {
      e.preventDefault();
      onSelect(next);
    }
  };

  const optionId = (i: number): string => `tl-point-${i}`;
  return (
    <div
      ref={box}
      class="timeline"
      tabIndex={0}
      role="listbox"
      aria-label="Restore points, oldest to newest: arrow keys move, Enter restores"
      aria-activedescendant={selected >= 0 ? optionId(selected) : undefined}
      onScroll={(e) => setView({ left: (e.currentTarget as HTMLDivElement).scrollLeft, width: (e.currentTarget as HTMLDivElement).clientWidth })}
      onKeyDown={onKeyDown}
      onMouseLeave={() => onHover(null)}
    >
      <svg width={width} height={HEIGHT} viewBox={`0 0 ${width} ${HEIGHT}`} class="timeline-svg">
        {spans
          .map((s, k) => ({ s, k }))
          .filter(({ s }) => s.to >= first && s.from <= last)
          .map(({ s, k }) => (
            <g key={`${s.chainId ?? 'none'}-${s.from}`} aria-hidden="true">
              <rect
                class={s.chainId === null ? 'tl-band tl-band-none' : `tl-band tl-band-${k % 2}`}
                x={s.from * COL}
                y={0}
                width={(s.to - s.from + 1) * COL}
                height={AXIS_Y - 12}
              />
              {s.to > s.from && <line class="tl-chain-line" x1={s.from * COL + COL / 2} x2={s.to * COL + COL / 2} y1={MARK_Y} y2={MARK_Y} />}
              {(s.to + 1) * COL - Math.max(s.from * COL, view.left) >= 90 && (
                <text class="tl-chain-label" x={Math.max(s.from * COL, view.left) + 4} y={14}>
                  {s.chainId === null ? 'unavailable' : `chain ${short(s.chainId)}`}
                </text>
              )}
            </g>
          ))}
        {shown.map((i) => {
          const p = points[i]!;
          const x = i * COL + COL / 2;
          return (
            <g
              key={p.id}
              id={optionId(i)}
              role="option"
              aria-selected={i === selected}
              aria-label={describe(i)}
              class={i === selected ? 'tl-point tl-selected' : 'tl-point'}
              data-point={p.id}
              data-kind={p.kind}
              data-health={p.health}
              onClick={() => onSelect(i)}
              onDblClick={() => onOpen(i)}
              onMouseEnter={() => onHover(i)}
            >
              <rect class="tl-hit" x={i * COL} y={20} width={COL} height={AXIS_Y - 32} />
              {i === selected && <rect class="tl-cursor" x={i * COL + 1} y={22} width={COL - 2} height={AXIS_Y - 36} rx={3} />}
              <Mark p={p} x={x} r={radius(p.storedBytes, maxStored)} />
              {p.gfs.map((g, k) => (
                <text key={g} class={`tl-gfs tl-gfs-${g}`} x={x} y={GFS_Y - k * 12} text-anchor="middle">
                  {GFS_LETTER[g]}
                </text>
              ))}
            </g>
          );
        })}
        <g aria-hidden="true">
          <line class="tl-axis" x1={0} x2={width} y1={AXIS_Y - 12} y2={AXIS_Y - 12} />
          {shown
            .filter((i) => i % labelEvery === 0)
            .map((i) => (
              <g key={`t${i}`}>
                <line class="tl-tick" x1={i * COL + COL / 2} x2={i * COL + COL / 2} y1={AXIS_Y - 12} y2={AXIS_Y - 7} />
                <text class="tl-time" x={i * COL + 2} y={AXIS_Y + 4}>
                  {labelOf(points[i]!.createdAt)}
                </text>
              </g>
            ))}
        </g>
      </svg>
    </div>
  );
}

/** What the marks mean, drawn with the same shapes and classes. */
export function Legend() {
  const item = (label: string, mark: JSX.Element) => (
    <li>
      <svg width={22} height={22} viewBox="0 0 22 22" aria-hidden="true">
        {mark}
      </svg>
      {label}
    </li>
  );
  return (
    <ul class="tl-legend" aria-label="Legend">
      {item('full', <rect class="tl-mark tl-full tl-ok" x={5} y={5} width={12} height={12} rx={2} />)}
      {item('increment', <circle class="tl-mark tl-increment tl-ok" cx={11} cy={11} r={6} />)}
      {item('rollback', <path class="tl-mark tl-rollback tl-ok" d="M11 3L19 11L11 19L3 11Z" />)}
      {item('damaged', <circle class="tl-mark tl-increment tl-damaged" cx={11} cy={11} r={6} />)}
      {item('unavailable', <circle class="tl-mark tl-increment tl-unavailable" cx={11} cy={11} r={6} />)}
      {item(
        'GFS weekly, monthly, yearly',
        <text class="tl-gfs" x={11} y={15} text-anchor="middle">
          W
        </text>,
      )}
      <li>size: bytes stored</li>
    </ul>
  );
}
