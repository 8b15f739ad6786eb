import { LifeboatError } from '../core/errors.js';

/**
 * The object-store seam: whole objects under names, as S3 has them. It is
 * small on purpose (restic's backend, kopia's blob storage): put, get (whole
 * or a byte range), head, list by prefix, delete. A repository on object
 * storage never rewrites a file in place; it writes immutable objects and
 * commits by creating a new root object with `ifNoneMatch: '*'`, which the
 * store creates only if no object of that name exists. Where the store can do
 * that atomically (a local folder; S3 without versioning, or honouring
 * If-None-Match) exactly one of two racing writers wins, the other gets
 * LFB_ERR_OBJECT_EXISTS; on a versioned radosgw 16 bucket it is emulated
 * (s3-versions.ts): readers agree on one winner, but two writers can both be
 * told they won, so a repository verifies a root it reads (checksum, parent).
 *
 * Errors leave a store as LifeboatErrors with stable codes (docs/errors.md):
 * LFB_ERR_OBJECT_NOT_FOUND, LFB_ERR_OBJECT_EXISTS, LFB_ERR_INVALID_ARGUMENT
 * (a name refused by checkObjectName), LFB_ERR_IMMUTABLE (a delete before
 * the object's retention date), LFB_ERR_NO_SPACE, LFB_ERR_STORE_TIMEOUT,
 * LFB_ERR_STORE_UNAVAILABLE, LFB_ERR_STORE_DENIED, LFB_ERR_STORE_UNSUPPORTED,
 * LFB_ERR_IO.
 */
export interface ObjectStore {
  /** Where the objects are, for messages: `s3://bucket/prefix/` or a folder. */
  readonly location: string;
  /** Whether put's `retainUntil` is kept (S3 object lock); when false such a put fails with LFB_ERR_IMMUTABLE_UNSUPPORTED. */
  readonly retention: boolean;
  /** Stores `data` as the whole object `name`; durable when it returns. Without `ifNoneMatch` an existing object is replaced. */
  put(name: string, data: Uint8Array, options?: PutOptions): Promise<void>;
  /**
   * The object's bytes, or those of `range`. Like pread, a range that runs
   * past the end of the object gives the bytes up to the end (fewer than
   * asked), and one that starts at or after the end gives none: the caller,
   * which knows how long the object should be, decides whether that is
   * damage. An absent object is LFB_ERR_OBJECT_NOT_FOUND.
   */
  get(name: string, range?: ByteRange): Promise<Buffer>;
  /** The object's size (and retention date), or undefined when it does not exist. */
  head(name: string): Promise<ObjectHead | undefined>;
  /**
   * Every object whose name starts with `prefix` (a folder `a/b/`, or any
   * beginning of a name), in the byte order of the names' UTF-8 (S3's order).
   * Read page by page as the caller iterates: memory does not grow with the
   * number of objects.
   */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Removes the object (every stored version of it); nothing to remove is not an error. */
  delete(name: string): Promise<void>;
  /** Releases connections; the store is not used afterwards. */
  close(): Promise<void>;
}

export interface PutOptions {
  /** `'*'`: create only (S3's If-None-Match: *); an existing object is left as it is and the put fails with LFB_ERR_OBJECT_EXISTS. */
  readonly ifNoneMatch?: '*';
  /** Object lock: the object cannot be deleted or replaced by anyone holding credentials before this date (COMPLIANCE mode). */
  readonly retainUntil?: Date;
}

export interface ByteRange {
  /** First byte, from 0. */
  readonly offset: number;
  /** At least 1. */
  readonly length: number;
}

export interface ObjectHead {
  readonly size: number;
  /** The object lock date of the object's current version, when it has one. */
  readonly retainUntil?: Date;
}

export interface ObjectInfo {
  readonly name: string;
  readonly size: number;
}

/** S3 limits a key to 1024 bytes of UTF-8. */
export const MAX_NAME_BYTES = 1024;
/** A local file system limits a file name to 255 bytes: so does every store, for one set of valid names. */
export const MAX_SEGMENT_BYTES = 255;
/** S3 limits a single PUT to 5 GiB; larger objects would need multipart uploads, which nothing here writes. */
export const MAX_OBJECT_BYTES = 5 * 1024 ** 3;

// C0 and C1 controls and DEL: invisible in logs and listings, and some stores refuse them.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// A surrogate left alone: no UTF-8 encoding exists for it.
const LONE_SURROGATE = /[\ud800-\udfff]/u;

function invalid(what: string, name: string, why: string): LifeboatError {
  return new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${what} ${JSON.stringify(name)}: ${why}`, { details: { name } });
}

function checkText(what: string, name: string): void {
  if (CONTROL.test(name)) throw invalid(what, name, 'control characters are not allowed');
  if (LONE_SURROGATE.test(name)) throw invalid(what, name, 'not valid Unicode');
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) throw invalid(what, name, `longer than ${MAX_NAME_BYTES} bytes of UTF-8`);
}

function checkSegment(what: string, name: string, segment: string): void {
  if (segment === '') throw invalid(what, name, 'empty path segment (a leading, trailing or doubled "/")');
  if (segment === '.' || segment === '..') throw invalid(what, name, `"${segment}" is not allowed as a path segment`);
  if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) throw invalid(what, name, `a path segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
}

/**
 * Refuses names that a store could not hold the same way everywhere, or that
 * would reach outside a local store's folder: empty, `.` or `..` segments,
 * leading, trailing or doubled `/`, control characters, invalid Unicode,
 * over 1024 bytes, a segment over 255 bytes. Every store checks every name with it, so a name valid on
 * one store is valid on all.
 */
export function checkObjectName(name: string): void {
  if (name === '') throw invalid('object name', name, 'empty');
  checkText('object name', name);
  for (const segment of name.split('/')) checkSegment('object name', name, segment);
}

/** A list prefix: '' (everything), a folder ending in `/`, or the beginning of a name. */
export function checkObjectPrefix(prefix: string): void {
  checkText('list prefix', prefix);
  const segments = prefix.split('/');
  for (const segment of segments.slice(0, -1)) checkSegment('list prefix', prefix, segment);
}

export function checkRange(name: string, range: ByteRange): void {
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 1)
    throw new LifeboatError(
      'LFB_ERR_INVALID_ARGUMENT',
      `get ${name}: invalid byte range (offset ${offset}, length ${length}): want an offset ≥ 0 and a length ≥ 1`,
      {
        details: { name, offset, length },
      },
    );
}

export function checkPutSize(name: string, data: Uint8Array): void {
  if (data.length > MAX_OBJECT_BYTES)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `put ${name}: ${data.length} bytes is over the ${MAX_OBJECT_BYTES}-byte limit of one object`, {
      details: { name, size: data.length },
    });
}

/** The order S3 lists keys in: bytewise on their UTF-8 (not JavaScript's UTF-16 order, which differs above U+FFFF). */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
