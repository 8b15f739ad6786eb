import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, rmdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { JOB_NAME_RE } from '../core/ids.js';
import { vmFiles } from '../qemu/index.js';
import { hostHoldTag, readCheckedJson, removeHold, withHoldsLock, writeCheckedJson, writeHold } from '../repository/index.js';
import { localStorage, removeDurable, type Storage } from '../storage/index.js';

/** How long a new session waits for retention to finish the action it is carrying out. */
const HOLD_WAIT_MS = 60_000;

const VM_FILES = new Set(Object.values(vmFiles('')).map((p) => basename(p)));

/**
 * The entries a session makes in its folder: the datastore's real files,
 * one overlay folder per disk, the migration's state, the booted VM's
 * sockets, logs and record. Stop removes these and nothing else.
 */
function madeBySession(entry: string): boolean {
  return entry === 'files' || /^overlay-\d+$/.test(entry) || /^migration\.json(\.\d+\.tmp)?$/.test(entry) || VM_FILES.has(entry);
}

/** An instant-recovery session as stored: enough to reopen it after a restart. */
export interface SessionRecord {
  readonly version: 1;
  readonly id: string;
  readonly name: string;
  readonly job: string;
  readonly pointId: string;
  readonly createdAt: string;
  /** The session's folder: overlays and the real files of the datastore. */
  readonly dir: string;
  readonly vmName: string;
  /** index: the point's disk; an empty disk added later (`instant add-disk`) has blank set and an index past the point's. */
  readonly disks: readonly { readonly index: number; readonly name: string; readonly size: number; readonly blank?: boolean }[];
}

/**
 * Sessions are recorded in <host root>/instant/sessions/<name>.json (the
 * repository's folder, or this host's folder of a repository on object
 * storage), and each holds its point with <repo>/jobs/<job>/holds/<name>.json,
 * written where the repository's files are, so that retention never deletes
 * or merges away a point that is being served.
 */
export class SessionStore {
  constructor(
    readonly repoRoot: string,
    private readonly hostRoot: string = repoRoot,
    private readonly storage: Storage = localStorage,
  ) {}

  private sessionsDir(): string {
    return join(this.hostRoot, 'instant', 'sessions');
  }

  /** A session's hold: `session-<name>`, with this host's tag on shared storage (hostHoldTag). */
  private holder(name: string): string {
    return `session-${hostHoldTag(this.storage)}${name}`;
  }

  private jobDir(job: string): string {
    return join(this.repoRoot, 'jobs', job);
  }

  static validateName(name: string): void {
    if (!JOB_NAME_RE.test(name)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `session name "${name}" must be 1-64 letters, digits, '.', '_' or '-'`);
  }

  async list(): Promise<SessionRecord[]> {
    const names = await readdir(this.sessionsDir()).catch(() => [] as string[]);
    const out: SessionRecord[] = [];
    for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
      try {
        out.push(await readCheckedJson<SessionRecord>(join(this.sessionsDir(), n), 'LFB_ERR_REPO_CORRUPT'));
      } catch (err) {
        if (!isLifeboatError(err)) throw err;
      }
    }
    return out;
  }

  private recordPath(name: string): string {
    return join(this.sessionsDir(), `${name}.json`);
  }

  /**
   * Records a new session. Its hold comes first (a point is protected before
   * it is served), written under the holds lock: the caller looks the point up
   * again afterwards, and retention either finished with it or sees the hold.
   */
  async create(rec: SessionRecord): Promise<void> {
    if (existsSync(this.recordPath(rec.name))) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `a session named "${rec.name}" already exists`);
    await mkdir(this.sessionsDir(), { recursive: true });
    await withHoldsLock(this.jobDir(rec.job), `job "${rec.job}"`, () => writeHold(this.jobDir(rec.job), this.holder(rec.name), rec.pointId, this.storage), {
      waitMs: HOLD_WAIT_MS,
      storage: this.storage,
    });
    await writeCheckedJson(this.recordPath(rec.name), rec);
  }

  /**
   * Removes the holds of sessions that have no record: what a server killed
   * between writing a session's hold and its record leaves, which would keep
   * retention from the point for ever. A record that exists but cannot be
   * read keeps its hold (its overlay may hold a guest's writes).
   */
  async removeOrphanHolds(): Promise<string[]> {
    const jobsDir = join(this.repoRoot, 'jobs');
    const removed: string[] = [];
    for (const job of await this.storage.list(jobsDir).catch(() => [] as string[])) {
      for (const n of await this.storage.list(join(jobsDir, job, 'holds')).catch(() => [] as string[])) {
        // Only this host's: on shared storage another host's sessions hold points too, with records this host has not.
        const m = new RegExp(`^session-${hostHoldTag(this.storage)}(.+)\\.json$`).exec(n);
        if (!m || existsSync(this.recordPath(m[1]!))) continue;
        await withHoldsLock(this.jobDir(job), `job "${job}"`, () => removeHold(this.jobDir(job), this.holder(m[1]!), this.storage), {
          waitMs: HOLD_WAIT_MS,
          storage: this.storage,
        });
        removed.push(`${job}/${m[1]!}`);
      }
    }
    return removed;
  }

  /** Records a change of a recorded session (a disk added); its point and hold stay. */
  async update(rec: SessionRecord): Promise<void> {
    await writeCheckedJson(this.recordPath(rec.name), rec);
  }

  /**
   * Forgets a session and deletes what it made in its folder, then the folder
   * if nothing else is left in it. With `keepVm`, the booted VM's files stay
   * (the VM runs on production storage now).
   */
  async remove(rec: SessionRecord, opts: { keepVm?: boolean } = {}): Promise<void> {
    await removeDurable(this.recordPath(rec.name));
    await removeHold(this.jobDir(rec.job), this.holder(rec.name), this.storage);
    for (const n of await readdir(rec.dir).catch(() => [] as string[]))
      if (madeBySession(n) && !(opts.keepVm === true && VM_FILES.has(n))) await rm(join(rec.dir, n), { recursive: true, force: true });
    await rmdir(rec.dir).catch(() => undefined);
  }
}
