/**
 * Retention planning: a pure function of the chains and the policy. It decides
 * what a run deletes or merges and records why every point is kept, so the
 * decision can be printed (`retention plan`) and golden-tested.
 */

export interface PlanPoint {
  readonly id: string;
  readonly seq: number;
  readonly createdAt: string;
}

/** A chain: its full's point first, then its increments in order. */
export interface PlanChain {
  readonly chainId: string;
  readonly points: readonly PlanPoint[];
}

export interface RetentionPolicy {
  readonly method: 'forward' | 'forever';
  readonly retainPoints: number;
}

export type RetentionAction =
  | { readonly type: 'delete-chain'; readonly chainId: string; readonly pointIds: readonly string[]; readonly reason: string }
  | { readonly type: 'merge'; readonly chainId: string; readonly fullPointId: string; readonly incrementPointId: string; readonly reason: string };

export interface RetentionPlan {
  /** In the order they must run. */
  readonly actions: readonly RetentionAction[];
  /** Every point that remains, with the reason it is kept. */
  readonly kept: readonly { readonly id: string; readonly reason: string }[];
}

export function planRetention(chains: readonly PlanChain[], policy: RetentionPolicy): RetentionPlan {
  const ordered = [...chains].filter((c) => c.points.length > 0).sort((a, b) => a.points[0]!.seq - b.points[0]!.seq);
  const all = ordered.flatMap((c) => c.points).sort((a, b) => b.seq - a.seq);
  const retained = new Set(all.slice(0, policy.retainPoints).map((p) => p.id));
  const actions: RetentionAction[] = [];
  const keptReason = new Map<string, string>();
  let total = all.length;
  const n = policy.retainPoints;

  ordered.forEach((chain, ci) => {
    const isLatest = ci === ordered.length - 1;
    const newest = chain.points[chain.points.length - 1]!;
    // Forward rule (both methods, for chains other than the latest): a whole
    // chain goes only when its newest point has fallen out of retention.
    if (!isLatest && !retained.has(newest.id)) {
      actions.push({ type: 'delete-chain', chainId: chain.chainId, pointIds: chain.points.map((p) => p.id), reason: `its newest point ${newest.id} is older than the newest ${n} points` });
      total -= chain.points.length;
      return;
    }
    let points = chain.points;
    if (policy.method === 'forever') {
      // Forever forward: merge the oldest increment into the full while there
      // are more points than retained; the full moves one point forward each time.
      while (total > n && points.length > 1) {
        const [full, inc] = points as [PlanPoint, PlanPoint];
        actions.push({ type: 'merge', chainId: chain.chainId, fullPointId: full.id, incrementPointId: inc.id, reason: `${total} points exceed retention of ${n}; point ${full.id} leaves, the full becomes point ${inc.id}` });
        points = points.slice(1);
        total -= 1;
      }
    }
    for (const p of points) {
      if (retained.has(p.id)) keptReason.set(p.id, `among the newest ${n} points`);
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
