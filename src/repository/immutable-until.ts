/**
 * The immutable-until date of a backup file on an immutable repository
 * (pure: docs/design.md §Immutable repositories). A file stays immutable
 * until the later of
 *  - the time it was sealed (or its point's creation, if later) plus the
 *    repository's immutable days, and
 *  - the day its point leaves short-term retention, when that day is known
 *    when the file is sealed: with retention by days, the start (UTC) of the
 *    day after the last one that keeps it (a point made on day D with
 *    --retain-days N is kept through day D + N).
 * With retention by points the day a point leaves depends on later runs, so
 * the first rule alone applies; retention then keeps the file past its turn
 * until the date, and says so.
 */
export const DAY_MS = 86_400_000;

export interface ImmutableUntilInput {
  /** When the file's point was made. */
  readonly createdAt: Date;
  /** When the file is sealed (at the end of the run that committed it, or a later run after a crash). */
  readonly sealedAt: Date;
  /** The repository's setting (≥ 1). */
  readonly immutableDays: number;
  /** The job's retention by days, if it has it. */
  readonly retainDays?: number | undefined;
}

export function immutableUntil(p: ImmutableUntilInput): Date {
  const floor = Math.max(p.createdAt.getTime(), p.sealedAt.getTime()) + p.immutableDays * DAY_MS;
  if (p.retainDays === undefined) return new Date(floor);
  const leaves = (Math.floor(p.createdAt.getTime() / DAY_MS) + p.retainDays + 1) * DAY_MS;
  return new Date(Math.max(floor, leaves));
}
