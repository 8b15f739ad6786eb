/**
 * The retention plan beside the timeline: what retention would delete or
 * merge if it ran now, and why every other point stays (GET …/retention-plan,
 * which changes nothing).
 */
import { short, type RetentionAction, type RetentionPlan } from './model';

const ACTION_WORDS: Record<RetentionAction['type'], string> = {
  'delete-chain': 'delete chain',
  merge: 'merge the full into the next point',
  'delete-rollback': 'delete rollback',
  'delete-increments': 'delete increments (the full stays for GFS)',
};

function pointsOf(a: RetentionAction): string[] {
  return [...(a.pointIds ?? []), ...(a.pointId ? [a.pointId] : []), ...(a.fullPointId ? [a.fullPointId] : [])];
}

export function PlanPanel({ plan }: { plan: RetentionPlan }) {
  // Points kept for the same reason are listed together (a chain's increments usually share one).
  const byReason = new Map<string, string[]>();
  for (const k of plan.kept) byReason.set(k.reason, [...(byReason.get(k.reason) ?? []), k.id]);
  return (
    <aside class="retention-plan" aria-labelledby="retention-plan-title">
      <h2 id="retention-plan-title">Retention plan</h2>
      <p class="hint">What retention would do if it ran now; nothing changes until a backup of the job runs it.</p>
      <h3>Would remove</h3>
      {plan.actions.length === 0 ? (
        <p data-plan="nothing">Nothing: every point is kept.</p>
      ) : (
        <ul class="plan-actions">
          {plan.actions.map((a, i) => (
            <li key={i} data-plan={a.type}>
              <strong>{ACTION_WORDS[a.type]}</strong> <code>{short(a.chainId)}</code>
              {pointsOf(a).length > 0 && <> ({pointsOf(a).map(short).join(', ')})</>}: {a.reason}
            </li>
          ))}
        </ul>
      )}
      <h3>Why each point is kept</h3>
      <ul class="plan-kept">
        {[...byReason].map(([reason, ids]) => (
          <li key={reason}>
            <span>{reason}</span>{' '}
            <span class="hint">
              ({ids.length === 1 ? `point ${short(ids[0]!)}` : `${ids.length} points: ${ids.slice(0, 6).map(short).join(', ')}${ids.length > 6 ? ', …' : ''}`})
            </span>
          </li>
        ))}
      </ul>
    </aside>
  );
}
