import { createHash, randomBytes } from 'node:crypto';
import { LifeboatError } from '../core/errors.js';
import { inPack, type Extent } from './extent-map.js';

/**
 * The objects of files kept on an object store (object-files.ts):
 *
 *   roots/<path>#<generation>   one committed state of a file: its size and extents (JSON)
 *   roots/<path>#dir            a folder made by mkdir
 *   packs/<ms>-<random>         bytes written between two flushes, never changed
 *
 * `<generation>` is 16 hex digits: a commit creates generation n+1 create-only,
 * so of two writers of one state only one commits; readers take the highest.
 * `#` cannot be in a path, so no file or folder name is mistaken for a root.
 */
export const ROOTS = 'roots/';
export const PACKS = 'packs/';
const GENERATION = /^[0-9a-f]{16}$/;
export const DIR_MARK = 'dir';

export function rootName(rel: string, generation: number): string {
  return `${ROOTS}${rel}#${generation.toString(16).padStart(16, '0')}`;
}

export function dirMarkName(rel: string): string {
  return `${ROOTS}${rel}#${DIR_MARK}`;
}

/** The generation a root's name says, or undefined for another object (a folder mark, a longer name). */
export function generationOf(name: string, rel: string): number | undefined {
  const prefix = `${ROOTS}${rel}#`;
  if (!name.startsWith(prefix)) return undefined;
  const g = name.slice(prefix.length);
  return GENERATION.test(g) ? parseInt(g, 16) : undefined;
}

/** A new pack's name: its creation time first, so that collect() can leave alone what a writer has not committed yet. */
export function newPackName(now: number): string {
  return `${PACKS}${String(now).padStart(13, '0')}-${randomBytes(8).toString('hex')}`;
}

/** When a pack was made, from its name (undefined for a name not made by newPackName). */
export function packTime(name: string): number | undefined {
  const m = /^packs\/(\d{13})-[0-9a-f]{16}$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

export interface FileRoot {
  readonly size: number;
  readonly extents: Extent[];
}

interface RootBody {
  format: 'lifeboat-file-root';
  version: 1;
  size: number;
  packs: string[];
  /** [file offset, length, index in packs, offset in the pack] */
  extents: [number, number, number, number][];
}

export function encodeRoot(size: number, extents: readonly Extent[]): Buffer {
  const packs: string[] = [];
  const index = new Map<string, number>();
  const rows: [number, number, number, number][] = [];
  for (const e of extents) {
    if (e.pack === undefined) throw new Error('encodeRoot: an extent is not flushed');
    let k = index.get(e.pack);
    if (k === undefined) {
      k = packs.push(e.pack) - 1;
      index.set(e.pack, k);
    }
    rows.push([e.offset, e.length, k, e.packOffset]);
  }
  const body: RootBody = { format: 'lifeboat-file-root', version: 1, size, packs, extents: rows };
  const text = JSON.stringify(body);
  return Buffer.from(JSON.stringify({ sha256: createHash('sha256').update(text).digest('hex'), body: text }));
}

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** A root's size and extents; a damaged or foreign root is LFB_ERR_FILE_CORRUPT. */
export function decodeRoot(name: string, bytes: Buffer): FileRoot {
  const bad = (why: string): LifeboatError =>
    new LifeboatError('LFB_ERR_FILE_CORRUPT', `${name}: not a valid file root (${why})`, { details: { object: name } });
  let outer: { sha256?: unknown; body?: unknown };
  let body: Partial<RootBody>;
  try {
    outer = JSON.parse(bytes.toString('utf8')) as typeof outer;
    if (typeof outer.body !== 'string' || typeof outer.sha256 !== 'string') throw bad('no body or checksum');
    if (createHash('sha256').update(outer.body).digest('hex') !== outer.sha256) throw bad('checksum mismatch');
    body = JSON.parse(outer.body) as Partial<RootBody>;
  } catch (err) {
    throw err instanceof LifeboatError ? err : bad('not JSON');
  }
  if (body.format !== 'lifeboat-file-root' || body.version !== 1) throw bad(`format ${String(body.format)} version ${String(body.version)}`);
  if (!isCount(body.size) || !Array.isArray(body.packs) || !Array.isArray(body.extents)) throw bad('size, packs or extents missing');
  const packs = body.packs;
  if (!packs.every((p) => typeof p === 'string' && packTime(p) !== undefined)) throw bad('a pack name is not one');
  const extents: Extent[] = [];
  let end = 0;
  for (const row of body.extents) {
    if (!Array.isArray(row) || row.length !== 4 || !row.every(isCount)) throw bad('an extent is not four counts');
    const [offset, length, k, packOffset] = row;
    if (length === 0 || offset < end || offset + length > body.size || k >= packs.length) throw bad(`extent at ${offset} out of order or range`);
    extents.push(inPack(offset, length, packs[k]!, packOffset));
    end = offset + length;
  }
  return { size: body.size, extents };
}
