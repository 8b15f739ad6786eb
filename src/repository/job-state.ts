import { join } from 'node:path';
import { isLifeboatError } from '../core/errors.js';
import { mapLimited } from '../core/map-limited.js';
import type { FileKind } from '../format/constants.js';
import type { FileHeader, Root, VmConfig } from '../format/index.js';
import { localStorage, removeDurable, type Storage } from '../storage/index.js';
import { BackupFileReader } from './backup-file.js';
import { writeCheckedJson } from './checked-json.js';
import { readHealth, type PointDamage } from './health.js';
import type { JobDefinition } from './job.js';

/** A committed backup file, as its header and root describe it. */
export interface ChainFile {
  readonly name: string;
  readonly path: string;
  readonly header: FileHeader;
  readonly root: Root;
}

export interface Chain {
  readonly chainId: string;
  readonly full: ChainFile;
  /** Increments that link to the full, in order. */
  readonly increments: readonly ChainFile[];
  /**
   * Reverse incremental: rollbacks (.vrb), newest first. The full holds the
   * newest point; each rollback takes the point after it back one point.
   */
  readonly rollbacks: readonly ChainFile[];
}

/** A restore point as users see it (`lifeboat points`). */
export interface PointInfo {
  readonly id: string;
  readonly seq: number;
  readonly createdAt: string;
  readonly kind: FileKind;
  readonly file: string;
  readonly chainId: string;
  readonly parentId: string | null;
  readonly diskSizes: readonly number[];
  /** The VM configuration stored with the point. */
  readonly vm: VmConfig;
}

export interface JobState {
  readonly dir: string;
  /** Where the job's files are (the repository's storage): everything done with this state reads and writes through it. */
  readonly storage: Storage;
  /** Oldest chain first. */
  readonly chains: readonly Chain[];
  /** Every restorable point, oldest first. */
  readonly points: readonly PointInfo[];
  /** Files that cannot be read, with the error; the points in them are unavailable. */
  readonly damaged: readonly DamagedFile[];
  /** Increments already merged into their full (a merge interrupted before deleting them). */
  readonly redundant: readonly string[];
  /** Increments whose parent point is missing. */
  readonly orphans: readonly string[];
  /** Temporary files of an interrupted run. */
  readonly temporary: readonly string[];
  /** Points that exist as files but cannot be restored (damaged file, or a broken link), with why. */
  readonly unavailable: readonly UnavailablePoint[];
  /** Points the last health check (`verify`) found damaged: never served, until a check finds them whole. */
  readonly damagedPoints: ReadonlyMap<string, PointDamage>;
}

export interface UnavailablePoint {
  readonly id: string;
  readonly createdAt: string;
  readonly kind: FileKind;
  readonly file: string;
  readonly code: 'LFB_ERR_FILE_CORRUPT' | 'LFB_ERR_FILE_TRUNCATED' | 'LFB_ERR_FILE_VERSION' | 'LFB_ERR_CHAIN_BROKEN' | string;
  readonly problem: string;
}

/** A backup file that cannot be read as one (which is not an I/O failure), and why. */
export interface DamagedFile {
  readonly file: string;
  readonly code: string;
  readonly message: string;
}

const NAME_RE = /^(\d{8}T\d{6}Z)_([0-9a-f]{12})\.(vbk|vib|vrb)$/;
const KIND_BY_EXT: Record<string, FileKind> = { vbk: 'full', vib: 'increment', vrb: 'rollback' };

/** What a file's name says of its point (names are `<UTC stamp>_<point id>.<ext>`). */
export function pointFromFileName(name: string): { id: string; createdAt: string; kind: FileKind } | undefined {
  const m = NAME_RE.exec(name);
  if (!m) return undefined;
  const st = m[1]!;
  const iso = `${st.slice(0, 4)}-${st.slice(4, 6)}-${st.slice(6, 8)}T${st.slice(9, 11)}:${st.slice(11, 13)}:${st.slice(13, 15)}.000Z`;
  return { id: m[2]!, createdAt: iso, kind: KIND_BY_EXT[m[3]!]! };
}

const BACKUP_FILE_RE = /\.(vbk|vib|vrb)$/;
/** Backup files whose header and root a scan reads at once. */
const SCAN_CONCURRENCY = 8;

/**
 * Reads a job folder into chains and points. The backup files are the truth;
 * the .vbm is only a summary written from this. Cost: header + root of every
 * file, never their data.
 */
export async function scanJob(dir: string, storage: Storage = localStorage): Promise<JobState> {
  const names = await storage.list(dir);
  const files: ChainFile[] = [];
  const damaged: DamagedFile[] = [];
  const temporary = names.filter((n) => n.startsWith('.') && n.endsWith('.tmp'));
  // Several files' headers and roots are read at once: a run scans its job twice, and reading one file after another
  // made each scan a chain of storage round trips (a CBT incremental's two scans: 6–19 ms, with eight at once 4–10).
  const read = await mapLimited(
    names.filter((name) => !name.startsWith('.') && BACKUP_FILE_RE.test(name)),
    SCAN_CONCURRENCY,
    async (name): Promise<ChainFile | DamagedFile | undefined> => {
      const path = join(dir, name);
      try {
        const r = await BackupFileReader.open(path, { storage });
        await r.close();
        return { name, path, header: r.header, root: r.root };
      } catch (err) {
        if (!isLifeboatError(err)) throw err;
        // Removed since it was listed (a merge or retention of another process): it is simply gone.
        if (err.code === 'LFB_ERR_IO' && err.details['errno'] === 'ENOENT') return undefined;
        // A failing device says nothing about the file: taking it for damaged would make a run build
        // on a wrong view of the chain (a new full, an increment on an older point). The scan fails instead.
        if (err.code === 'LFB_ERR_IO' || err.code === 'LFB_ERR_NO_SPACE') throw err;
        return { file: name, code: err.code, message: err.message };
      }
    },
  );
  for (const r of read) {
    if (r === undefined) continue;
    if ('header' in r) files.push(r);
    else damaged.push(r);
  }

  const byChain = new Map<string, ChainFile[]>();
  for (const f of files) {
    const list = byChain.get(f.header.chainId) ?? [];
    list.push(f);
    byChain.set(f.header.chainId, list);
  }

  const chains: Chain[] = [];
  const redundant: string[] = [];
  const orphans: string[] = [];
  /** Rollbacks whose own chain has no full: a transform may have linked them to a later chain. */
  const loose: ChainFile[] = [];
  for (const [chainId, list] of byChain) {
    const fulls = list.filter((f) => f.root.kind === 'full');
    const incs = list.filter((f) => f.root.kind === 'increment').sort((a, b) => a.root.seq - b.root.seq);
    const rbs = list.filter((f) => f.root.kind === 'rollback').sort((a, b) => b.root.seq - a.root.seq);
    const full = fulls[0];
    if (full === undefined || fulls.length > 1) {
      orphans.push(...incs.map((f) => f.name));
      if (full === undefined) loose.push(...rbs);
      else orphans.push(...rbs.map((f) => f.name));
      continue;
    }
    // Rollbacks link from the full's point backwards. One that holds the full's
    // own point was written by a run that died before committing the full.
    const rollbacks: ChainFile[] = [];
    let newer = full.root.pointId;
    for (const rb of rbs) {
      if (rb.root.pointId === full.root.pointId || rb.root.seq >= full.root.seq) redundant.push(rb.name);
      else if (rb.root.parentPointId === newer) {
        rollbacks.push(rb);
        newer = rb.root.pointId;
      } else orphans.push(rb.name);
    }
    const merged = new Set(full.root.meta.mergedPointIds ?? []);
    const linked: ChainFile[] = [];
    let tip = full.root.pointId;
    for (const inc of incs) {
      if (inc.root.seq <= full.root.seq && merged.has(inc.root.pointId)) redundant.push(inc.name);
      else if (inc.root.parentPointId === tip) {
        linked.push(inc);
        tip = inc.root.pointId;
      } else orphans.push(inc.name);
    }
    chains.push({ chainId, full, increments: linked, rollbacks });
  }
  chains.sort((a, b) => a.full.root.seq - b.full.root.seq);
  // A synthetic full holds the same point as the increment it was built from
  // (deleted right after; still here if the run died in between): the full wins.
  const fullPoints = new Set(chains.map((c) => c.full.root.pointId));
  for (let i = 0; i < chains.length; i++) {
    const c = chains[i]!;
    const tip = c.increments[c.increments.length - 1];
    if (tip && fullPoints.has(tip.root.pointId)) {
      redundant.push(tip.name);
      chains[i] = { ...c, increments: c.increments.slice(0, -1) };
    }
  }

  settleTransforms(chains, redundant, loose);
  attachLooseRollbacks(chains, loose, orphans);

  const points: PointInfo[] = [];
  for (const c of chains) {
    for (const f of [...c.rollbacks, c.full, ...c.increments]) {
      points.push({
        id: f.root.pointId,
        seq: f.root.seq,
        createdAt: new Date(f.root.createdAtMs).toISOString(),
        kind: f.root.kind,
        file: f.name,
        chainId: c.chainId,
        parentId: f.root.parentPointId,
        diskSizes: f.root.diskSizes,
        vm: f.root.meta.vm,
      });
    }
  }
  points.sort((a, b) => a.seq - b.seq);

  const unavailable: UnavailablePoint[] = [];
  for (const d of damaged) {
    const p = pointFromFileName(d.file);
    unavailable.push({ id: p?.id ?? '?', createdAt: p?.createdAt ?? '', kind: p?.kind ?? 'full', file: d.file, code: d.code, problem: d.message });
  }
  const orphanChains = new Set(files.filter((f) => orphans.includes(f.name)).map((f) => f.header.chainId));
  for (const f of files) {
    if (orphans.includes(f.name) || (orphanChains.has(f.header.chainId) && f.root.kind === 'full' && !chains.some((c) => c.full === f))) {
      unavailable.push({
        id: f.root.pointId,
        createdAt: new Date(f.root.createdAtMs).toISOString(),
        kind: f.root.kind,
        file: f.name,
        code: 'LFB_ERR_CHAIN_BROKEN',
        problem: `${f.name}: the point it builds on (${f.root.parentPointId ?? 'its full'}) is missing or damaged`,
      });
    }
  }
  unavailable.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  const known = new Set(points.map((p) => p.id));
  const damagedPoints = new Map([...(await readHealth(dir, storage))].filter(([id]) => known.has(id)));
  return { dir, storage, chains, points, damaged, redundant, orphans, temporary, unavailable, damagedPoints };
}

/**
 * A transform into rollbacks (methods/transform.ts) holds an old chain's
 * points twice while it runs: in the old chain, and as rollbacks of a later
 * full. When every point of the old chain has its rollback, the transform got
 * that far and the old chain is redundant (listed so that deleting in order
 * never leaves a file whose base is gone). Otherwise it was interrupted: the
 * old chain is whole and the later chain's rollbacks from the first such one
 * on are redundant; the next run starts the transform again.
 */
function settleTransforms(chains: Chain[], redundant: string[], loose: ChainFile[]): void {
  const rolledBackIn = new Map<string, Chain>();
  for (const c of chains) for (const r of c.rollbacks) rolledBackIn.set(r.root.pointId, c);
  if (rolledBackIn.size === 0) return;
  for (const old of [...chains]) {
    // A transform rewrites the full and increments; the old chain's own rollbacks stay and link on.
    const own = [old.full, ...old.increments];
    const held = own.filter((f) => (rolledBackIn.get(f.root.pointId)?.full.root.seq ?? -1) > old.full.root.seq);
    if (held.length === 0) continue;
    if (held.length === own.length) {
      redundant.push(...[...old.increments].reverse().map((f) => f.name), old.full.name);
      chains.splice(chains.indexOf(old), 1);
      loose.push(...old.rollbacks);
      continue;
    }
    const ids = new Set(held.map((f) => f.root.pointId));
    for (let i = 0; i < chains.length; i++) {
      const c = chains[i]!;
      const cut = c.rollbacks.findIndex((r) => ids.has(r.root.pointId));
      if (cut < 0 || c === old) continue;
      redundant.push(
        ...c.rollbacks
          .slice(cut)
          .reverse()
          .map((f) => f.name),
      );
      chains[i] = { ...c, rollbacks: c.rollbacks.slice(0, cut) };
    }
  }
}

/**
 * Rollbacks left without their full by a transform (the old full became a
 * rollback of a later one) continue the chain that now holds the point they
 * lead to: each links to the oldest point of a chain by its parent point.
 */
function attachLooseRollbacks(chains: Chain[], loose: readonly ChainFile[], orphans: string[]): void {
  const byParent = new Map<string, ChainFile[]>();
  for (const rb of loose) byParent.set(rb.root.parentPointId ?? '', [...(byParent.get(rb.root.parentPointId ?? '') ?? []), rb]);
  const used = new Set<ChainFile>();
  for (let i = 0; i < chains.length; i++) {
    const c = chains[i]!;
    const rollbacks = [...c.rollbacks];
    for (;;) {
      const oldest = rollbacks[rollbacks.length - 1] ?? c.full;
      const next = (byParent.get(oldest.root.pointId) ?? [])
        .filter((r) => !used.has(r) && r.root.seq < oldest.root.seq)
        .sort((a, b) => b.root.seq - a.root.seq)[0];
      if (next === undefined) break;
      used.add(next);
      rollbacks.push(next);
    }
    if (rollbacks.length > c.rollbacks.length) chains[i] = { ...c, rollbacks };
  }
  orphans.push(...loose.filter((r) => !used.has(r)).map((r) => r.name));
}

/** Removes what an interrupted run left behind. Call only while holding the job lock. */
export async function cleanupJob(state: JobState): Promise<string[]> {
  const removed: string[] = [];
  for (const n of [...state.temporary, ...state.redundant]) {
    await removeDurable(join(state.dir, n), state.storage);
    removed.push(n);
  }
  return removed;
}

/** The chain a point lives in, and the files to read it: full first, the point's file last. */
export function filesForPoint(state: JobState, pointId: string): ChainFile[] | undefined {
  for (const c of state.chains) {
    const files = [c.full];
    if (c.full.root.pointId === pointId) return files;
    // A rolled-back point: the full, then the rollbacks from the newest down to it.
    const k = c.rollbacks.findIndex((r) => r.root.pointId === pointId);
    if (k >= 0) return [c.full, ...c.rollbacks.slice(0, k + 1)];
    for (const inc of c.increments) {
      files.push(inc);
      if (inc.root.pointId === pointId) return files;
    }
  }
  return undefined;
}

export const VBM_SUFFIX = '.vbm';

/** Writes the job's metadata summary (the role of Veeam's .vbm). Derived: losing it loses nothing. */
export async function writeVbm(job: JobDefinition, state: JobState, now: Date): Promise<void> {
  await writeCheckedJson(
    join(state.dir, `${job.name}${VBM_SUFFIX}`),
    {
      format: 'lifeboat-vbm',
      version: 1,
      job: job.name,
      jobId: job.jobId,
      writtenAt: now.toISOString(),
      chains: state.chains.map((c) => ({
        chainId: c.chainId,
        files: [...[...c.rollbacks].reverse(), c.full, ...c.increments].map((f) => ({
          file: f.name,
          kind: f.root.kind,
          pointId: f.root.pointId,
          seq: f.root.seq,
          createdAt: new Date(f.root.createdAtMs).toISOString(),
        })),
      })),
      points: state.points,
      damaged: state.damaged,
    },
    state.storage,
  );
}
