import { LifeboatError } from '../core/errors.js';
import { describeDamage } from './health.js';
import type { JobState, PointInfo } from './job-state.js';

/**
 * `latest`, a full id, or a unique id prefix of ≥ 4 characters. A point the
 * health check marked damaged is refused (unless `allowDamaged`, for verify).
 */
export function resolvePoint(state: JobState, ref: string, opts: { allowDamaged?: boolean } = {}): PointInfo {
  const p = findPoint(state, ref);
  const damage = opts.allowDamaged ? undefined : state.damagedPoints.get(p.id);
  if (damage) {
    throw new LifeboatError(
      damage.files.length > 0 ? 'LFB_ERR_FILE_CORRUPT' : 'LFB_ERR_BLOCK_CORRUPT',
      `restore point ${p.id} cannot be restored: ${describeDamage(damage)}. Choose another point (\`lifeboat points\`); \`lifeboat verify --repair\` makes a new whole point from the source`,
      {
        details: { point: p.id },
      },
    );
  }
  return p;
}

function findPoint(state: JobState, ref: string): PointInfo {
  const bad = state.unavailable.find((u) => u.id === ref || (ref.length >= 4 && u.id.startsWith(ref)));
  if (bad && !state.points.some((p) => p.id.startsWith(ref))) {
    throw new LifeboatError(
      bad.code === 'LFB_ERR_CHAIN_BROKEN' ? 'LFB_ERR_CHAIN_BROKEN' : 'LFB_ERR_FILE_CORRUPT',
      `restore point ${bad.id} cannot be restored: ${bad.problem}`,
      { details: { point: bad.id, file: bad.file } },
    );
  }
  if (ref === 'latest') {
    const latest = state.points[state.points.length - 1];
    const newestBad = state.unavailable[state.unavailable.length - 1];
    // Never answer "latest" with an older point because the newest one is damaged.
    if (newestBad && (latest === undefined || newestBad.createdAt > latest.createdAt)) {
      throw new LifeboatError(
        newestBad.code === 'LFB_ERR_CHAIN_BROKEN' ? 'LFB_ERR_CHAIN_BROKEN' : 'LFB_ERR_FILE_CORRUPT',
        `the latest restore point ${newestBad.id} cannot be restored: ${newestBad.problem}. Choose an earlier point explicitly with --point (see \`lifeboat points\`)`,
        { details: { point: newestBad.id, file: newestBad.file } },
      );
    }
  }
  if (state.points.length === 0) {
    throw new LifeboatError('LFB_ERR_NO_POINTS', `job has no restore points yet; run \`lifeboat backup\` first`);
  }
  if (ref === 'latest') return state.points[state.points.length - 1]!;
  const exact = state.points.find((p) => p.id === ref);
  if (exact) return exact;
  const byPrefix = ref.length >= 4 ? state.points.filter((p) => p.id.startsWith(ref)) : [];
  if (byPrefix.length === 1) return byPrefix[0]!;
  if (byPrefix.length > 1) throw new LifeboatError('LFB_ERR_POINT_AMBIGUOUS', `point "${ref}" matches ${byPrefix.length} points; give more characters`);
  throw new LifeboatError('LFB_ERR_POINT_NOT_FOUND', `no restore point "${ref}" (see \`lifeboat points\`)`, { details: { point: ref } });
}
