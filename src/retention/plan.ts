/**
 * Retention planning: a pure function of the chains and the policy. It decides
 * what a run deletes or merges and records why every point is kept, so the
 * decision can be printed (`retention plan`) and golden-tested.
 */

export interface PlanPoint {
  readonly id: string;
  readonly seq: number;
  readonly createdAt: string;
  /** A full that forever-forward merges moved past the point it was made as: it carries no GFS flag. */
  readonly merged?: boolean | undefined;
}

/**
 * A chain's points, oldest first: its rollbacks, its full, its increments. A
 * forward chain has no rollbacks; a reverse chain has no increments (its full
 * holds the newest point); a chain that older chains were transformed into
 * has both.
 */
export interface PlanChain {
  readonly chainId: string;
  readonly points: readonly PlanPoint[];
  /** How many of the first points are rollbacks. */
  readonly rollbacks?: number | undefined;
  /** Shorthand for a reverse chain: every point but the last is a rollback. */
  readonly reverse?: boolean | undefined;
  /**
   * Its full was moved to the capacity tier, where no file is written in place: a forever-forward merge cannot
   * run on it, so the chain is kept whole until its newest point leaves retention (the forward rule).
   */
  readonly onCapacityTier?: boolean | undefined;
}

export interface RetentionPolicy {
  readonly method: 'forward' | 'forever' | 'reverse';
  /** Keep the newest N points. */
  readonly retainPoints: number;
  /**
   * Keep instead the points of the last N days (calendar days in UTC, today
   * not counted, so a point lives N+1 days: Veeam's rule), and never fewer
   * than the newest MIN_POINTS_BY_DAYS points.
   */
  readonly retainDays?: number | undefined;
  /** The time the plan is made for (ISO); needed with retainDays and gfs. */
  readonly now?: string | undefined;
  /** Long-term retention: how many weekly, monthly and yearly fulls to keep. */
  readonly gfs?: GfsPolicy | undefined;
}

export interface GfsPolicy {
  readonly weekly: number;
  readonly monthly: number;
  readonly yearly: number;
}

/** With retention by days, at least this many points are always kept (Veeam's minimum). */
export const MIN_POINTS_BY_DAYS = 3;

const DAY_MS = 86_400_000;
const dayNumber = (iso: string): number => Math.floor(Date.parse(iso) / DAY_MS);

/** Which points the short-term policy retains, and the reason for each. */
function retainedPoints(all: readonly PlanPoint[], policy: RetentionPolicy): Map<string, string> {
  const out = new Map<string, string>();
  if (policy.retainDays === undefined) {
    for (const p of all.slice(0, policy.retainPoints)) out.set(p.id, `among the newest ${policy.retainPoints} points`);
    return out;
  }
  if (policy.now === undefined) throw new Error('retention by days needs the time');
  const today = dayNumber(policy.now);
  for (const p of all) if (today - dayNumber(p.createdAt) <= policy.retainDays) out.set(p.id, `created within the last ${policy.retainDays} days`);
  for (const p of all.slice(0, MIN_POINTS_BY_DAYS))
    if (!out.has(p.id)) out.set(p.id, `one of the newest ${MIN_POINTS_BY_DAYS} points, kept whatever their age`);
  return out;
}

/** Monday 00:00 UTC of the week of `ms`, as a day number. */
const weekOf = (iso: string): number => {
  const day = dayNumber(iso);
  return day - ((new Date(day * DAY_MS).getUTCDay() + 6) % 7);
};
const monthOf = (iso: string): number => {
  const d = new Date(iso);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
};
const yearOf = (iso: string): number => new Date(iso).getUTCFullYear();

/**
 * GFS flags, from the fulls alone (no stored state, so a plan is the same
 * whoever computes it): the first full of each week, month and year is
 * flagged, and a flag holds while its period is among the newest N periods
 * up to now. A flagged full is kept whatever the short-term policy says.
 */
function gfsFlags(fulls: readonly PlanPoint[], gfs: GfsPolicy, now: string): Map<string, string> {
  const out = new Map<string, string>();
  const byAge = [...fulls].sort((a, b) => a.seq - b.seq);
  const periods: [string, number, (iso: string) => number, (n: number) => string][] = [
    ['weekly', gfs.weekly, (iso) => weekOf(iso) / 7, (n) => `week of ${new Date(n * 7 * DAY_MS).toISOString().slice(0, 10)}`],
    ['monthly', gfs.monthly, monthOf, (n) => `${Math.floor(n / 12)}-${String((n % 12) + 1).padStart(2, '0')}`],
    ['yearly', gfs.yearly, yearOf, (n) => String(n)],
  ];
  for (const [name, keep, periodOf, label] of periods) {
    if (keep <= 0) continue;
    const current = periodOf(now);
    const seen = new Set<number>();
    for (const f of byAge) {
      const p = periodOf(f.createdAt);
      if (seen.has(p)) continue;
      seen.add(p);
      if (current - p < keep && !out.has(f.id)) out.set(f.id, `${name} GFS full (${label(p)}; ${keep} kept)`);
    }
  }
  return out;
}

export type GfsKind = 'weekly' | 'monthly' | 'yearly';

/**
 * Every GFS flag each full holds now (a full can be the first of its week and
 * of its month), by the rule gfsFlags keeps them: for reports (the points a
 * job keeps long-term). Fulls merged forward carry none.
 */
export function gfsFlagsByPoint(chains: readonly PlanChain[], gfs: GfsPolicy, now: string): Map<string, GfsKind[]> {
  const fulls = chains
    .filter((c) => c.points.length > 0)
    .map((c) => c.points[0]!)
    .filter((p) => !p.merged)
    .sort((a, b) => a.seq - b.seq);
  const out = new Map<string, GfsKind[]>();
  const periods: [GfsKind, number, (iso: string) => number][] = [
    ['weekly', gfs.weekly, weekOf],
    ['monthly', gfs.monthly, monthOf],
    ['yearly', gfs.yearly, yearOf],
  ];
  for (const [kind, keep, periodOf] of periods) {
    if (keep <= 0) continue;
    // weekOf counts days: a week is 7 of them.
    const step = kind === 'weekly' ? 7 : 1;
    const current = periodOf(now) / step;
    const seen = new Set<number>();
    for (const f of fulls) {
      const p = periodOf(f.createdAt) / step;
      if (seen.has(p)) continue;
      seen.add(p);
      if (current - p < keep) out.set(f.id, [...(out.get(f.id) ?? []), kind]);
    }
  }
  return out;
}

/**
 * A job that keeps GFS fulls but schedules no full day needs fulls made for
 * it: a forever-forward chain has one full, which moves forward with every
 * merge and so never stays a GFS point, and a forward chain with no full day
 * never starts another. When no full made as a full (not merged) exists yet in
 * the current period of a GFS kind kept (week, month, year), this run's point becomes a
 * synthetic full. Returns why, or undefined when none is due. Pure, like the plan.
 */
export function gfsFullDue(chains: readonly PlanChain[], gfs: GfsPolicy, now: string): string | undefined {
  const kinds: [string, number, (iso: string) => number][] = [
    ['week', gfs.weekly, weekOf],
    ['month', gfs.monthly, monthOf],
    ['year', gfs.yearly, yearOf],
  ];
  const fulls = chains
    .filter((c) => c.points.length > 0)
    .map((c) => c.points[0]!)
    .filter((f) => !f.merged);
  for (const [name, keep, periodOf] of kinds) {
    if (keep <= 0) continue;
    const current = periodOf(now);
    if (!fulls.some((f) => periodOf(f.createdAt) === current)) return `no full made as a full yet this ${name}, and GFS keeps one per ${name}`;
  }
  return undefined;
}

/** How the policy reads in reasons ("the newest 7 points", "the last 14 days"). */
function policyWords(policy: RetentionPolicy): string {
  return policy.retainDays === undefined ? `the newest ${policy.retainPoints} points` : `the last ${policy.retainDays} days`;
}

export type RetentionAction =
  | { readonly type: 'delete-chain'; readonly chainId: string; readonly pointIds: readonly string[]; readonly reason: string }
  | { readonly type: 'merge'; readonly chainId: string; readonly fullPointId: string; readonly incrementPointId: string; readonly reason: string }
  | { readonly type: 'delete-rollback'; readonly chainId: string; readonly pointId: string; readonly reason: string }
  /** A forward chain whose full is kept by GFS loses its increments only. */
  | { readonly type: 'delete-increments'; readonly chainId: string; readonly pointIds: readonly string[]; readonly reason: string };

export interface RetentionPlan {
  /** In the order they must run. */
  readonly actions: readonly RetentionAction[];
  /** Every point that remains, with the reason it is kept. */
  readonly kept: readonly { readonly id: string; readonly reason: string }[];
}

export function planRetention(chains: readonly PlanChain[], policy: RetentionPolicy): RetentionPlan {
  const ordered = [...chains].filter((c) => c.points.length > 0).sort((a, b) => a.points[0]!.seq - b.points[0]!.seq);
  const all = ordered.flatMap((c) => c.points).sort((a, b) => b.seq - a.seq);
  const retained = retainedPoints(all, policy);
  if (policy.gfs) {
    if (policy.now === undefined) throw new Error('GFS retention needs the time');
    // Only fulls made as fulls (a chain's first point) carry flags; a merged full has moved on.
    for (const [id, why] of gfsFlags(
      ordered.map((c) => c.points[0]!).filter((p) => !p.merged),
      policy.gfs,
      policy.now,
    ))
      if (!retained.has(id)) retained.set(id, why);
  }
  const actions: RetentionAction[] = [];
  const keptReason = new Map<string, string>();
  const words = policyWords(policy);

  ordered.forEach((chain, ci) => {
    const isLatest = ci === ordered.length - 1;
    const newest = chain.points[chain.points.length - 1]!;
    const rollbackCount = chain.rollbacks ?? (chain.reverse ? chain.points.length - 1 : 0);
    // Forward rule (both methods, for chains other than the latest): a whole
    // chain goes only when its newest point has fallen out of retention.
    if (!isLatest && !retained.has(newest.id) && rollbackCount === 0 && retained.has(chain.points[0]!.id) && chain.points.length > 1) {
      // The full is kept by GFS: its increments go, newest first.
      const incs = chain.points.slice(1);
      actions.push({
        type: 'delete-increments',
        chainId: chain.chainId,
        pointIds: incs.map((p) => p.id),
        reason: `its newest point ${newest.id} is outside ${words}; the full stays for GFS`,
      });
      keptReason.set(chain.points[0]!.id, retained.get(chain.points[0]!.id)!);
      return;
    }
    if (!isLatest && !retained.has(newest.id) && !retained.has(chain.points[0]!.id)) {
      actions.push({
        type: 'delete-chain',
        chainId: chain.chainId,
        pointIds: chain.points.map((p) => p.id),
        reason: `its newest point ${newest.id} is outside ${words}`,
      });
      return;
    }
    let points = chain.points;
    if (rollbackCount > 0) {
      // Rollbacks: the oldest go at once; nothing depends on them.
      let left = rollbackCount;
      while (left > 0 && !retained.has(points[0]!.id)) {
        actions.push({ type: 'delete-rollback', chainId: chain.chainId, pointId: points[0]!.id, reason: `point ${points[0]!.id} is outside ${words}` });
        points = points.slice(1);
        left -= 1;
      }
      for (const p of points.slice(0, left)) keptReason.set(p.id, retained.get(p.id) ?? 'rollback that an older retained point needs');
      points = points.slice(left);
      if (points.length === 1) {
        keptReason.set(newest.id, retained.get(newest.id) ?? `the full of chain ${chain.chainId.slice(0, 8)}, holding its newest point`);
        return;
      }
    }
    // Never the latest chain: a tier run does not move it, and kept whole it would grow without end (its merge fails with a code instead).
    if (policy.method === 'forever' && chain.onCapacityTier === true && !isLatest) {
      for (const p of points)
        if (!retained.has(p.id))
          keptReason.set(
            p.id,
            `on the capacity tier, where a merge cannot write: chain ${chain.chainId.slice(0, 8)} goes whole once its newest point ${newest.id} leaves ${words}`,
          );
    } else if (policy.method === 'forever') {
      // Forever forward: while the full's point is out of retention, merge the
      // oldest increment into it; the full moves one point forward each time.
      while (points.length > 1 && !retained.has(points[0]!.id)) {
        const [full, inc] = points as [PlanPoint, PlanPoint];
        actions.push({
          type: 'merge',
          chainId: chain.chainId,
          fullPointId: full.id,
          incrementPointId: inc.id,
          reason: `point ${full.id} is outside ${words}; it leaves, the full becomes point ${inc.id}`,
        });
        points = points.slice(1);
      }
    }
    for (const p of points) {
      if (keptReason.has(p.id)) continue;
      const why = retained.get(p.id);
      if (why !== undefined) keptReason.set(p.id, why);
      else if (p === points[0]) keptReason.set(p.id, `full that later points of chain ${chain.chainId.slice(0, 8)} need`);
      else keptReason.set(p.id, `increment in a chain whose newest point ${newest.id} is retained`);
    }
  });

  const kept = all
    .filter((p) => keptReason.has(p.id))
    .reverse()
    .map((p) => ({ id: p.id, reason: keptReason.get(p.id)! }));
  return { actions, kept };
}
