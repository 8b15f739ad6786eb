import { chmod, lstat, readdir } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { join } from 'node:path';

/** Set-id and sticky bits: never on a session file (the server may run as root). */
export const SET_ID_AND_STICKY = 0o7000;
export const PERMISSION_BITS = 0o777;

/** Where a handle's inode is now. */
export interface Located {
  readonly path: string;
  /** Relative to the session folder ('' is the folder itself). */
  readonly rel: string;
  readonly st: BigIntStats;
}

export interface SessionIndexOptions {
  /** Least time between two rescans caused by unknown inode numbers. */
  readonly rescanIntervalMs: number;
  readonly monotonicMs: () => number;
}

/**
 * Where each inode of a session folder lives (handles carry inode numbers,
 * the file system wants paths). Kept up to date by the datastore's own
 * changes (create, rename, remove) and by every lookup and listing, so a
 * handle the server gave out is found without I/O beyond one lstat.
 *
 * An inode it does not know is either gone (STALE) or was moved behind the
 * server's back; only a walk of the whole folder can tell, so such walks are
 * rate-limited: at most one per `rescanIntervalMs`, and never more often than
 * ten times the last walk's duration apart. A flood of made-up handles then
 * costs a map lookup each, not a recursive rescan each.
 */
export class SessionIndex {
  private paths = new Map<bigint, string>();
  private lastRescanMs = Number.NEGATIVE_INFINITY;
  private lastRescanCostMs = 0;
  private rescanning: Promise<void> | undefined;

  constructor(
    private readonly root: string,
    private readonly opts: SessionIndexOptions,
  ) {}

  /**
   * Where an inode is: one lstat when it is where the index says. Unknown or
   * moved: a rescan may find it if one is allowed now (never one per request).
   */
  async locate(ino: bigint): Promise<Located | undefined> {
    return (await this.check(ino)) ?? ((await this.rescanIfAllowed()) ? this.check(ino) : undefined);
  }

  private async check(ino: bigint): Promise<Located | undefined> {
    const rel = this.paths.get(ino);
    if (rel === undefined) return undefined;
    const path = join(this.root, rel);
    try {
      // bigint, for the exact inode (GETATTR of lock files is ESXi's heartbeat).
      const st = await lstat(path, { bigint: true });
      if (st.ino === ino) return { path, rel, st };
    } catch {
      /* moved or gone */
    }
    return undefined;
  }

  remember(ino: bigint, rel: string): void {
    this.paths.set(ino, rel);
  }

  forget(ino: bigint): void {
    this.paths.delete(ino);
  }

  /** `from` was renamed to `to`; a folder takes everything below it along. */
  moved(ino: bigint, from: string, to: string, isDir: boolean): void {
    this.paths.set(ino, to);
    if (!isDir) return;
    const prefix = `${from}/`;
    for (const [i, rel] of this.paths) if (rel.startsWith(prefix)) this.paths.set(i, to + rel.slice(from.length));
  }

  /** Walks the whole folder (when a session is added, and rate-limited after); clears set-id bits it finds. */
  async rescan(): Promise<void> {
    const started = this.opts.monotonicMs();
    this.lastRescanMs = started;
    const paths = new Map<bigint, string>();
    const walk = async (rel: string): Promise<void> => {
      const path = join(this.root, rel);
      const st = await lstat(path, { bigint: true });
      paths.set(st.ino, rel);
      // Left by an older server, or by hand: a session file is never set-id.
      if ((st.isFile() || st.isDirectory()) && (Number(st.mode) & SET_ID_AND_STICKY) !== 0) await chmod(path, Number(st.mode) & PERMISSION_BITS);
      if (!st.isDirectory()) return;
      for (const n of await readdir(path)) await walk(rel === '' ? n : `${rel}/${n}`).catch(() => undefined);
    };
    try {
      await walk('');
      this.paths = paths;
    } finally {
      this.lastRescanMs = this.opts.monotonicMs();
      this.lastRescanCostMs = this.lastRescanMs - started;
    }
  }

  /**
   * Rescans if one may run now (or joins the one running). False: rescans are
   * rate-limited and the caller should answer from what it knows.
   */
  private async rescanIfAllowed(): Promise<boolean> {
    if (this.rescanning) {
      await this.rescanning;
      return true;
    }
    const wait = Math.max(this.opts.rescanIntervalMs, 10 * this.lastRescanCostMs);
    if (this.opts.monotonicMs() - this.lastRescanMs < wait) return false;
    this.rescanning = this.rescan().finally(() => (this.rescanning = undefined));
    await this.rescanning;
    return true;
  }
}
