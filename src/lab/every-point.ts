/**
 * `--every-point`: which restore point each VM of a SureBackup job boots, so
 * that night after night every point of the job is booted once, oldest
 * untested first (new points and the history both get covered).
 */

export interface PointChoice {
  readonly point: string;
  /** True when every point had a result already: the latest is tested again. */
  readonly retest: boolean;
}

/**
 * The oldest point (in `points`, oldest first) with no SureBackup result and
 * not taken by an earlier VM of the same run; when there is none, the latest
 * point again. Undefined when the job has no point.
 */
export function chooseEveryPoint(points: readonly string[], tested: ReadonlySet<string>, taken: ReadonlySet<string> = new Set()): PointChoice | undefined {
  if (points.length === 0) return undefined;
  const untested = points.find((p) => !tested.has(p) && !taken.has(p));
  return untested !== undefined ? { point: untested, retest: false } : { point: points[points.length - 1]!, retest: true };
}

/** A VM of the group: its job and its point as given (`pinned` when `@point` was). */
export interface GroupVm {
  readonly job: string;
  readonly point: string;
  readonly pinned: boolean;
}

/**
 * The point of each VM: pinned ones keep theirs; the others take, each in
 * turn, the oldest untested point of their job (two VMs of one job take two
 * points). `pointsOf` lists a job's points oldest first; `testedOf` the
 * points that have a result.
 */
export async function choosePoints(
  vms: readonly GroupVm[],
  pointsOf: (job: string) => Promise<readonly string[]>,
  testedOf: (job: string) => Promise<ReadonlySet<string>>,
): Promise<{ job: string; point: string; retest: boolean }[]> {
  const taken = new Map<string, Set<string>>();
  const out: { job: string; point: string; retest: boolean }[] = [];
  for (const v of vms) {
    if (v.pinned) {
      out.push({ job: v.job, point: v.point, retest: false });
      continue;
    }
    const mine = taken.get(v.job) ?? new Set<string>();
    taken.set(v.job, mine);
    const choice = chooseEveryPoint(await pointsOf(v.job), await testedOf(v.job), mine);
    // A job without points: "latest" fails at boot with the job's own error, in the report.
    if (choice === undefined) {
      out.push({ job: v.job, point: 'latest', retest: false });
      continue;
    }
    mine.add(choice.point);
    out.push({ job: v.job, point: choice.point, retest: choice.retest });
  }
  return out;
}
