import { join } from 'node:path';
import { isLifeboatError } from '../core/errors.js';
import { localStorage, type Storage } from '../storage/index.js';
import { readCheckedJson, writeCheckedJson } from './checked-json.js';
import { filesForPoint, type JobState } from './job-state.js';
import { RestorePointDisk } from './restore-point-disk.js';
import type { VerifyProblem } from './verify.js';

export const HEALTH_FILE = 'health.json';

/** What the last health check found wrong with one restore point. */
export interface PointDamage {
  readonly checkedAt: string;
  /** Blocks the point reads whose stored copy is damaged (the first 1000). */
  readonly blocks: readonly { readonly disk: number; readonly block: number; readonly file: string }[];
  readonly blockCount: number;
  /** Files the point needs that cannot be opened at all. */
  readonly files: readonly string[];
}

interface HealthRecord {
  readonly format: 'lifeboat-health';
  readonly version: 1;
  readonly points: Record<string, PointDamage>;
}

const MAX_BLOCKS_LISTED = 1000;

/**
 * The job's health record (jobs/<job>/health.json): the restore points the
 * last `verify` found damaged. It only ever adds refusals: losing or damaging
 * it loses nothing, since reads check every block anyway.
 */
export async function readHealth(dir: string, storage: Storage = localStorage): Promise<ReadonlyMap<string, PointDamage>> {
  try {
    const r = await readCheckedJson<HealthRecord>(join(dir, HEALTH_FILE), 'LFB_ERR_JOB_CORRUPT', storage);
    return new Map(Object.entries(r.points ?? {}));
  } catch (err) {
    // No record, or a damaged one: nothing refused. A failing device is reported (a record we cannot read may refuse points).
    if (isLifeboatError(err, 'LFB_ERR_JOB_CORRUPT') || (isLifeboatError(err, 'LFB_ERR_IO') && err.details['errno'] === 'ENOENT')) return new Map();
    throw err;
  }
}

/**
 * Which of `pointIds` read a damaged block or need a damaged file, from the
 * problems verify found: a point reads block b of disk d from one file and
 * offset (its block map says which), and is damaged if that copy is.
 */
export async function damageByPoint(
  state: JobState,
  pointIds: readonly string[],
  problems: readonly VerifyProblem[],
  now: Date,
): Promise<Map<string, PointDamage>> {
  const badCopies = new Set(problems.filter((p) => p.offset !== undefined).map((p) => `${p.file}\0${p.offset}`));
  const badFiles = new Set(problems.filter((p) => p.offset === undefined).map((p) => p.file));
  const out = new Map<string, PointDamage>();
  for (const id of pointIds) {
    const files = filesForPoint(state, id);
    if (!files) continue;
    const brokenFiles = files.filter((f) => badFiles.has(f.name)).map((f) => f.name);
    const blocks: { disk: number; block: number; file: string }[] = [];
    let blockCount = 0;
    if (brokenFiles.length === 0 && badCopies.size > 0) {
      const top = files[files.length - 1]!;
      for (let d = 0; d < top.root.diskSizes.length; d++) {
        const disk = await RestorePointDisk.open(files, d, { cacheBytes: 0, storage: state.storage });
        try {
          for (const bi of disk.allocatedBlocks()) {
            const { file, slot } = disk.storedBlock(bi)!;
            if (!badCopies.has(`${file.name}\0${file.root.tables[d]!.offset(slot)}`)) continue;
            blockCount += 1;
            if (blocks.length < MAX_BLOCKS_LISTED) blocks.push({ disk: d, block: bi, file: file.name });
          }
        } finally {
          await disk.close();
        }
      }
    }
    if (brokenFiles.length > 0 || blockCount > 0) out.set(id, { checkedAt: now.toISOString(), blocks, blockCount, files: brokenFiles });
  }
  return out;
}

/** Records what a check of `checked` found: damaged points are marked, whole ones cleared; points that no longer exist are dropped. */
export async function recordHealth(state: JobState, checked: readonly string[], damage: ReadonlyMap<string, PointDamage>): Promise<void> {
  const before = await readHealth(state.dir, state.storage);
  const exists = new Set([...state.points.map((p) => p.id), ...state.unavailable.map((u) => u.id)]);
  const points: Record<string, PointDamage> = {};
  for (const [id, d] of before) if (exists.has(id) && !checked.includes(id)) points[id] = d;
  for (const [id, d] of damage) points[id] = d;
  if (before.size === 0 && Object.keys(points).length === 0) return;
  await writeCheckedJson(join(state.dir, HEALTH_FILE), { format: 'lifeboat-health', version: 1, points } satisfies HealthRecord, state.storage);
}

/** One line on a damaged point, for messages. */
export function describeDamage(d: PointDamage): string {
  const what =
    d.files.length > 0
      ? `file(s) ${d.files.join(', ')} cannot be read`
      : `${d.blockCount} of its blocks are damaged (first: disk ${d.blocks[0]?.disk}, block ${d.blocks[0]?.block} in ${d.blocks[0]?.file})`;
  return `verify found it damaged on ${d.checkedAt}: ${what}`;
}
