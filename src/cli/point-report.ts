/**
 * Facts about stored points for reports (`backup`, `points`, `repo info`):
 * how each disk's changes were found and how many bytes each file takes.
 */
import { join } from 'node:path';
import type { ChainFile, JobState } from '../repository/index.js';

/** How the changes of one disk of a point were found: `full` (everything read), `hash` (compared) or `cbt` (dirty bitmap). */
export interface DiskChanges {
  readonly method: 'full' | 'hash' | 'cbt';
  /** Why CBT was not used although the job asks for it. */
  readonly note?: string;
}

/** Every backup file of the job's chains, by the id of the point it holds. */
export function filesByPoint(state: JobState): Map<string, ChainFile> {
  const out = new Map<string, ChainFile>();
  for (const c of state.chains) for (const f of [...c.rollbacks, c.full, ...c.increments]) out.set(f.root.pointId, f);
  return out;
}

/** What the point's file recorded of its disks' change tracking (points written before it was recorded: none). */
export function changesOf(file: ChainFile | undefined): DiskChanges[] {
  return (file?.root.meta.changes ?? []).map((c) => ({ method: c.method, ...(c.note === undefined ? {} : { note: c.note }) }));
}

/** "cbt", "hash: <why CBT fell back>", per disk when disks differ; "-" when nothing was recorded. */
export function describeChanges(changes: readonly DiskChanges[]): string {
  const each = changes.map((c) => (c.note === undefined ? c.method : `${c.method}: ${c.note}`));
  if (each.length === 0) return '-';
  return each.every((e) => e === each[0]) ? each[0]! : each.map((e, d) => `disk ${d + 1} ${e}`).join('; ');
}

/** Bytes a backup file takes in the repository (its length), read through the repository's storage. */
export async function storedBytes(state: JobState, file: string): Promise<number> {
  const f = await state.storage.open(join(state.dir, file), 'read');
  try {
    return await f.size();
  } finally {
    await f.close();
  }
}
