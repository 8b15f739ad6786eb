import { LifeboatError } from '../core/errors.js';
import { formatBytes } from '../core/units.js';
import type { PointInfo } from '../repository/job-state.js';
import type { OpenedSource } from '../source/index.js';

/**
 * A source that lost more than half its size, or whose format changed, since
 * the newest point is far more often a mistake (an image replaced by a stub,
 * a path pointing at another file) than a real change. Backing it up would
 * store a point of almost nothing, and a few such runs push the good points
 * out of retention, so the run refuses before writing anything unless the
 * user says the change is intended (`--accept-source-change`).
 */
export function checkSourceChange(jobName: string, previous: PointInfo | undefined, opened: readonly OpenedSource[]): void {
  if (previous === undefined) return;
  const changes: string[] = [];
  opened.forEach((o, d) => {
    const before = previous.diskSizes[d];
    const name = `disk ${d} (${o.source.path})`;
    // Points made before the format was recorded carry none: only the size can be compared then.
    const formatBefore = previous.vm.disks[d]?.format;
    if (formatBefore !== undefined && formatBefore !== o.format) changes.push(`${name} was ${formatBefore} and is ${o.format} now`);
    if (before !== undefined && o.source.size * 2 < before)
      changes.push(`${name} was ${formatBytes(before)} and is ${formatBytes(o.source.size)} now, less than half`);
  });
  if (changes.length === 0) return;
  throw new LifeboatError(
    'LFB_ERR_SOURCE_CHANGED',
    `the source changed since point ${previous.id}: ${changes.join('; ')}. Nothing was written. Check the job's disks; if the change is intended, run \`lifeboat backup ${jobName} --accept-source-change\``,
    { details: { pointId: previous.id, changes } },
  );
}
