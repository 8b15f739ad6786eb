import type { DirEntry } from '../file-system.js';

/**
 * READDIR cookies from names: an entry's cookie is 3 + a 53-bit hash of its
 * name (cyrb53), and a listing is paged in cookie order. A client resuming
 * after a cookie gets the entries whose cookies are larger, so entries added
 * or removed meanwhile move nothing else: what was there all along is listed
 * exactly once (ext4 and knfsd page by name hash for the same reason). Cookies
 * stay below 2^54, positive as a signed 64-bit offset for every client.
 */
export interface CookieIndex {
  /** The listing's entries in cookie order. */
  readonly entries: readonly DirEntry[];
  /** cookies[i] is entries[i]'s cookie, strictly increasing. */
  readonly cookies: readonly bigint[];
}

/** cyrb53 (public domain, bryc): two 32-bit multiplicative hashes mixed into 53 bits. */
function nameHash(name: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < name.length; i++) {
    const ch = name.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** Cookies 1 and 2 are "." and ".."; entries start at 3. */
const FIRST_ENTRY_COOKIE = 3;

/**
 * Indexes by listing: a file system returns the same array while a folder is
 * unchanged, so a folder's index is built once, not once per page, and goes
 * away with the listing.
 */
const indexes = new WeakMap<readonly DirEntry[], CookieIndex>();

export function cookieIndex(listing: readonly DirEntry[]): CookieIndex {
  const known = indexes.get(listing);
  if (known) return known;
  const keyed = listing.map((entry) => ({ entry, key: nameHash(entry.name) + FIRST_ENTRY_COOKIE }));
  keyed.sort((a, b) => a.key - b.key || (a.entry.name < b.entry.name ? -1 : 1));
  const cookies: bigint[] = [];
  let last = 0;
  for (const k of keyed) {
    // Two names with one hash (about 1 in 10^7 for a folder of 20000): the later one takes the next free cookie.
    const c = Math.max(k.key, last + 1);
    cookies.push(BigInt(c));
    last = c;
  }
  const index: CookieIndex = { entries: keyed.map((k) => k.entry), cookies };
  indexes.set(listing, index);
  return index;
}

/** Position of the first entry whose cookie is larger than `cookie`. */
export function firstAfter(index: CookieIndex, cookie: bigint): number {
  let lo = 0;
  let hi = index.cookies.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (index.cookies[mid]! <= cookie) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
