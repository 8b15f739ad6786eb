/**
 * What the points page reads from the API (the `Point`, `PointList` and
 * `RetentionPlan` schemas of src/service/http/schemas.ts) and what it makes
 * of it: chains as runs of points, the reason each point is kept, and the
 * words for a point's kind and change method.
 */

export type ChangeMethod = 'cbt' | 'hash' | 'full';
export type PointKind = 'full' | 'increment' | 'rollback';
export type Health = 'ok' | 'damaged' | 'unavailable';
export type GfsFlag = 'weekly' | 'monthly' | 'yearly';

export interface Point {
  id: string;
  seq: number;
  createdAt: string;
  kind: PointKind;
  file: string;
  chainId: string | null;
  parentId: string | null;
  diskSizes: number[];
  diskBytes: number;
  storedBytes: number | null;
  gfs: GfsFlag[];
  health: Health;
  problem?: string;
  problemCode?: string;
  changes: { method: ChangeMethod; note?: string }[];
  changeMethod: ChangeMethod | null;
  /** A repository with a capacity tier: where the point's backup file is. */
  place?: FilePlace;
}

export type FilePlace = 'local' | 'capacity' | 'both';

/** Where a point's file is, in words: its blocks are read from there. */
export const PLACE_WORDS: Record<FilePlace, string> = { local: 'repository', capacity: 'capacity tier', both: 'repository and capacity tier' };

export interface PointList {
  repo: string;
  job: string;
  points: Point[];
}

export interface RetentionAction {
  type: 'delete-chain' | 'merge' | 'delete-rollback' | 'delete-increments';
  chainId: string;
  pointIds?: string[];
  pointId?: string;
  fullPointId?: string;
  incrementPointId?: string;
  reason: string;
}

export interface RetentionPlan {
  actions: RetentionAction[];
  kept: { id: string; reason: string }[];
}

/** A run of consecutive points (oldest first) of one chain; unavailable points, which belong to no chain, make runs of their own. */
export interface ChainSpan {
  chainId: string | null;
  /** Index of the first and last point in the job's list (inclusive). */
  from: number;
  to: number;
}

export function chainSpans(points: readonly Point[]): ChainSpan[] {
  const spans: ChainSpan[] = [];
  points.forEach((p, i) => {
    const last = spans[spans.length - 1];
    if (last && last.chainId !== null && last.chainId === p.chainId && last.to === i - 1) last.to = i;
    else spans.push({ chainId: p.chainId, from: i, to: i });
  });
  return spans;
}

/** The first 8 characters of an id: enough to tell points apart on screen (the CLI takes a unique prefix too). */
export const short = (id: string | null): string => (id === null ? '—' : id.slice(0, 8));

const METHOD_WORDS: Record<ChangeMethod, string> = {
  cbt: 'CBT (changed-block tracking)',
  hash: 'hash (every block read and compared)',
  full: 'full read',
};

/** How a point's changes were found, disk by disk, with the reason when CBT was asked for but not used. */
export function changeText(p: Point): string {
  if (p.changes.length === 0) return p.changeMethod === null ? 'not recorded' : METHOD_WORDS[p.changeMethod];
  const same = p.changes.every((c) => c.method === p.changes[0]!.method && c.note === p.changes[0]!.note);
  const one = (c: { method: ChangeMethod; note?: string }): string => (c.note ? `${METHOD_WORDS[c.method]}: ${c.note}` : METHOD_WORDS[c.method]);
  if (same) return one(p.changes[0]!);
  return p.changes.map((c, i) => `disk ${i}: ${one(c)}`).join('; ');
}

export const KIND_WORDS: Record<PointKind, string> = { full: 'full', increment: 'increment', rollback: 'rollback' };

export const GFS_LETTER: Record<GfsFlag, string> = { weekly: 'W', monthly: 'M', yearly: 'Y' };

/** What retention plans to do with each point now (delete, merge), by point id. */
export function plannedFor(plan: RetentionPlan | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const a of plan?.actions ?? []) {
    const ids = [...(a.pointIds ?? []), ...(a.pointId ? [a.pointId] : []), ...(a.fullPointId ? [a.fullPointId] : [])];
    const verb = a.type === 'merge' ? 'merged into the next point' : 'deleted';
    for (const id of ids) out.set(id, `${verb}: ${a.reason}`);
  }
  return out;
}

/** A one-line description of a point, as a screen reader and the hover card say it. */
export function describe(p: Point, keptWhy: string | undefined, planned: string | undefined): string {
  const parts = [
    `${KIND_WORDS[p.kind]} ${short(p.id)}`,
    new Date(p.createdAt).toLocaleString(),
    p.health === 'ok' ? 'healthy' : `${p.health}${p.problem ? `: ${p.problem}` : ''}`,
    p.gfs.length > 0 ? `GFS ${p.gfs.join(', ')}` : '',
    `changes by ${changeText(p)}`,
    planned ? `retention: ${planned}` : keptWhy ? `kept: ${keptWhy}` : '',
  ];
  return parts.filter(Boolean).join('; ');
}
