import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  gfsFullDue,
  planRetention,
  type GfsPolicy,
  type PlanChain,
  type PlanPoint,
  type RetentionAction,
  type RetentionPolicy,
} from '../src/retention/index.js';
import { rng } from './helpers.js';

/**
 * Planner-level retention model over simulated months and years: a run a
 * day, the backup's choice of full or increment as the backup run makes it
 * (first run, scheduled active full, GFS synthetic full when no full day is
 * scheduled), then the plan applied to the chains the way retention applies
 * it. Pure functions only, so hundreds of days take milliseconds. After
 * every run:
 * - no action destroys a full that GFS flags (a flagged full is never merged into or deleted);
 * - a job with GFS and no full day keeps, for each of the newest N periods it
 *   has run in, a full made in that period (the reported case: forever,
 *   2 days, weekly=2 lost its only GFS full after two weeks);
 * - the newest points the short-term policy promises exist;
 * - storage is bounded: the point count never grows with the number of runs;
 * - the plan, applied, leaves nothing to do.
 */
const DAY = 86_400_000;
const day0 = Date.parse('2026-01-07T21:00:00Z'); // a Wednesday

interface Config {
  readonly method: 'forward' | 'forever';
  readonly retainPoints: number;
  readonly retainDays?: number;
  readonly gfs?: GfsPolicy;
  /** Weekdays (0 = Sunday) with an active full. */
  readonly activeFullDays: readonly number[];
  readonly days: number;
}

const mondayOf = (ms: number): number => Math.floor(ms / DAY) - ((new Date(ms).getUTCDay() + 6) % 7);
const monthOf = (ms: number): number => new Date(ms).getUTCFullYear() * 12 + new Date(ms).getUTCMonth();
const yearOf = (ms: number): number => new Date(ms).getUTCFullYear();

/** The periods GFS promises a full for at `now`: the newest N of each kind, from the job's first run on. */
function promisedPeriods(gfs: GfsPolicy, now: number): [string, number, (ms: number) => number][] {
  const out: [string, number, (ms: number) => number][] = [];
  const kinds: [string, number, (ms: number) => number, number][] = [
    ['week', gfs.weekly, (ms) => mondayOf(ms) / 7, 1],
    ['month', gfs.monthly, monthOf, 1],
    ['year', gfs.yearly, yearOf, 1],
  ];
  for (const [name, keep, periodOf] of kinds) {
    const current = periodOf(now);
    for (let p = current - keep + 1; p <= current; p++) if (p >= periodOf(day0)) out.push([name, p, periodOf]);
  }
  return out;
}

function destroyed(action: RetentionAction): string[] {
  if (action.type === 'merge') return [action.fullPointId];
  if (action.type === 'delete-rollback') return [action.pointId];
  return [...action.pointIds];
}

function apply(chains: PlanChain[], action: RetentionAction): PlanChain[] {
  return chains.flatMap((c) => {
    if (c.chainId !== action.chainId) return [c];
    if (action.type === 'delete-chain') return [];
    if (action.type === 'delete-increments') return [{ ...c, points: c.points.filter((p) => !action.pointIds.includes(p.id)) }];
    if (action.type === 'merge') {
      assert.equal(c.points[0]!.id, action.fullPointId, 'a merge takes the oldest increment into the full');
      const [, inc, ...rest] = c.points;
      return [{ ...c, points: [{ ...inc!, merged: true }, ...rest] }];
    }
    throw new Error(`unexpected ${action.type}`);
  });
}

function simulate(cfg: Config): { maxPoints: number } {
  let chains: PlanChain[] = [];
  let seq = 0;
  let chainSeq = 0;
  const made: string[] = [];
  let maxPoints = 0;
  for (let day = 0; day < cfg.days; day++) {
    const now = day0 + day * DAY;
    const iso = new Date(now).toISOString();
    seq += 1;
    const point: PlanPoint = { id: `p${seq}`, seq, createdAt: iso };
    made.push(point.id);
    const latest = chains[chains.length - 1];
    const fullToday = chains.some((c) => c.points[0]!.createdAt.slice(0, 10) === iso.slice(0, 10) && !c.points[0]!.merged);
    if (latest === undefined || (cfg.activeFullDays.includes(new Date(now).getUTCDay()) && !fullToday)) {
      chains.push({ chainId: `c${++chainSeq}`, points: [point] });
    } else {
      chains = [...chains.slice(0, -1), { ...latest, points: [...latest.points, point] }];
      // The backup run's rule: GFS and no full day scheduled → this increment becomes a synthetic full.
      if (cfg.gfs && cfg.activeFullDays.length === 0 && gfsFullDue(chains, cfg.gfs, iso) !== undefined)
        chains = [...chains.slice(0, -1), { ...latest, points: latest.points }, { chainId: `c${++chainSeq}`, points: [point] }];
    }
    const policy: RetentionPolicy = {
      method: cfg.method,
      retainPoints: cfg.retainPoints,
      retainDays: cfg.retainDays,
      now: iso,
      gfs: cfg.gfs,
    };
    const plan = planRetention(chains, policy);
    if (cfg.gfs) {
      // Flagged fulls, from an independent reading of the rule: the first full made as a full in each promised period.
      const fulls = chains
        .map((c) => c.points[0]!)
        .filter((p) => !p.merged)
        .sort((a, b) => a.seq - b.seq);
      const flagged = new Set<string>();
      for (const [name, period, periodOf] of promisedPeriods(cfg.gfs, now)) {
        const first = fulls.find((f) => periodOf(Date.parse(f.createdAt)) === period);
        if (first) flagged.add(first.id);
        else if (cfg.activeFullDays.length === 0) assert.fail(`day ${day} (${iso.slice(0, 10)}): no full made this ${name} (a promised GFS period)`);
      }
      for (const a of plan.actions) for (const id of destroyed(a)) assert.ok(!flagged.has(id), `day ${day}: ${a.type} destroys GFS full ${id}`);
    }
    for (const a of plan.actions) chains = apply(chains, a);
    chains = chains.filter((c) => c.points.length > 0);
    assert.deepEqual(planRetention(chains, policy).actions, [], `day ${day}: the plan, applied, leaves work`);
    const present = new Set(chains.flatMap((c) => c.points.map((p) => p.id)));
    const promised = cfg.retainDays === undefined ? cfg.retainPoints : Math.min(made.length, 3);
    for (const id of made.slice(-promised)) assert.ok(present.has(id), `day ${day}: retained point ${id} missing`);
    maxPoints = Math.max(maxPoints, present.size);
  }
  return { maxPoints };
}

test('retention model: forever, 2 days, weekly=2, no full day (the reported case), 120 days: a full for each of the newest two weeks, bounded', () => {
  const { maxPoints } = simulate({
    method: 'forever',
    retainPoints: 7,
    retainDays: 2,
    gfs: { weekly: 2, monthly: 0, yearly: 0 },
    activeFullDays: [],
    days: 120,
  });
  // Two weeks of chains at most, and the GFS fulls.
  assert.ok(maxPoints <= 16, `${maxPoints} points`);
});

test('retention model: random forward and forever jobs with GFS over two years: flagged fulls never merged or deleted, storage bounded', () => {
  const rand = rng(1313);
  for (let i = 0; i < 30; i++) {
    const gfs = { weekly: Math.floor(rand() * 4), monthly: Math.floor(rand() * 4), yearly: Math.floor(rand() * 3) };
    const scheduled = rand() < 0.4;
    const cfg: Config = {
      method: rand() < 0.5 ? 'forward' : 'forever',
      retainPoints: 1 + Math.floor(rand() * 8),
      ...(rand() < 0.4 ? { retainDays: 1 + Math.floor(rand() * 6) } : {}),
      ...(gfs.weekly + gfs.monthly + gfs.yearly > 0 ? { gfs } : {}),
      activeFullDays: scheduled ? [1 + Math.floor(rand() * 6)] : [],
      days: 500,
    };
    const { maxPoints } = simulate(cfg);
    // A chain lives at most one period of the shortest kind kept (or a week with a scheduled full).
    const periodDays = !cfg.gfs || scheduled ? 7 : gfs.weekly > 0 ? 7 : gfs.monthly > 0 ? 31 : 366;
    const bound = 2 * periodDays + cfg.retainPoints + (cfg.retainDays ?? 0) + gfs.weekly + gfs.monthly + gfs.yearly + 3;
    if (cfg.gfs || scheduled || cfg.method === 'forever') assert.ok(maxPoints <= bound, `${JSON.stringify(cfg)}: ${maxPoints} points > ${bound}`);
  }
});
