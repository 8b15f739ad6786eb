import type { DirEntry } from '../nfs/index.js';

/**
 * Listings of real folders of the datastore, kept for a short time so that
 * paging through a big folder lists it once, not once per page (READDIR and
 * READDIRPLUS would otherwise cost O(n) lstat calls per page, O(n^2) for the
 * folder). A listing is used only while its folder's mtime and ctime are the
 * ones it was made under, it was used within the last `idleMs` and it is
 * younger than `maxAgeMs` (a change made behind the server within the same
 * timestamp tick as the listing shows up after at most that); the datastore
 * drops a folder's listing itself whenever it changes the folder.
 * Bounded: at most `maxFolders` listings and `maxEntries` entries in all (a
 * folder bigger than that is listed anew for each page), least recently used
 * dropped first.
 */
export interface ListingCacheOptions {
  readonly maxFolders: number;
  readonly maxEntries: number;
  readonly idleMs: number;
  readonly maxAgeMs: number;
  readonly monotonicMs: () => number;
}

interface Kept {
  readonly version: string;
  readonly madeMs: number;
  usedMs: number;
  readonly listing: readonly DirEntry[];
}

export class ListingCache {
  private readonly kept = new Map<string, Kept>();
  private entries = 0;

  constructor(private readonly opts: ListingCacheOptions) {}

  get(key: string, version: string): readonly DirEntry[] | undefined {
    const k = this.kept.get(key);
    if (k === undefined) return undefined;
    const now = this.opts.monotonicMs();
    if (k.version !== version || now - k.usedMs > this.opts.idleMs || now - k.madeMs > this.opts.maxAgeMs) {
      this.drop(key);
      return undefined;
    }
    k.usedMs = now;
    // Most recently used last (Map keeps insertion order).
    this.kept.delete(key);
    this.kept.set(key, k);
    return k.listing;
  }

  set(key: string, version: string, listing: readonly DirEntry[]): void {
    this.drop(key);
    if (listing.length > this.opts.maxEntries) return;
    while (this.kept.size >= this.opts.maxFolders || this.entries + listing.length > this.opts.maxEntries) {
      const oldest = this.kept.keys().next().value as string;
      this.drop(oldest);
    }
    const now = this.opts.monotonicMs();
    this.kept.set(key, { version, madeMs: now, usedMs: now, listing });
    this.entries += listing.length;
  }

  drop(key: string): void {
    const k = this.kept.get(key);
    if (k === undefined) return;
    this.kept.delete(key);
    this.entries -= k.listing.length;
  }

  /** Drops every listing whose key starts with `prefix` (a session's). */
  dropPrefix(prefix: string): void {
    for (const key of [...this.kept.keys()]) if (key.startsWith(prefix)) this.drop(key);
  }

  get size(): { folders: number; entries: number } {
    return { folders: this.kept.size, entries: this.entries };
  }
}
