import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { JOB_NAME_RE } from '../core/ids.js';
import { readCheckedJson, removeHold, writeCheckedJson, writeHold } from '../repository/index.js';
import { removeDurable } from '../storage/index.js';

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
 * Sessions are recorded in <repo>/instant/sessions/<name>.json, and each
 * holds its point with <repo>/jobs/<job>/holds/<name>.json so that retention
 * never deletes or merges away a point that is being served.
 */
export class SessionStore {
  constructor(readonly repoRoot: string) {}

  private sessionsDir(): string {
    return join(this.repoRoot, 'instant', 'sessions');
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

  async save(rec: SessionRecord): Promise<void> {
    await mkdir(this.sessionsDir(), { recursive: true });
    // The hold first: a point is protected before it is served.
    await writeHold(this.jobDir(rec.job), `session-${rec.name}`, rec.pointId);
    await writeCheckedJson(join(this.sessionsDir(), `${rec.name}.json`), rec);
  }

  /** Forgets a session and deletes its folder (but the entries matching `keep`, if given). */
  async remove(rec: SessionRecord, opts: { keep?: RegExp | undefined } = {}): Promise<void> {
    await removeDurable(join(this.sessionsDir(), `${rec.name}.json`));
    await removeHold(this.jobDir(rec.job), `session-${rec.name}`);
    if (opts.keep === undefined) return rm(rec.dir, { recursive: true, force: true });
    for (const n of await readdir(rec.dir).catch(() => [] as string[])) if (!opts.keep.test(n)) await rm(join(rec.dir, n), { recursive: true, force: true });
  }
}
