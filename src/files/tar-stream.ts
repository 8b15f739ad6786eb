/**
 * The archives `lifeboat files` hands out, made from what the appliance
 * streams: a tar-out archive of a folder (GNU tar inside the appliance, pax
 * because of `xattrs:true`: times in ns, UTF-8 names, hard links as links),
 * or one member made here for a file, symlink or special file. Every member
 * is written again on its way out, for two reasons tar-out cannot serve:
 *
 * - names: tar-out names its entries `./…`; the archive's one top entry is
 *   the path's last part (or `.`), so each name (and each hard link's
 *   target) gets that prefix, in a pax `path` record.
 * - holes: tar-out has no --sparse. A regular member's whole 4 KiB blocks of
 *   zeros are taken out and the member written in GNU's pax sparse format 1.0
 *   (the map first, then the data; GNU tar restores the holes on extraction,
 *   with or without --sparse), when they add up to SPARSE_MIN_HOLES. The map
 *   goes before the data, so a member is held in memory until its end, up to
 *   HELD_DATA_MAX bytes of non-zero data: past that it goes out as it is,
 *   holes written as zeros (a huge sparse file with that much data loses its
 *   holes, a 200 MiB file of data is not held whole).
 *
 * Pure JavaScript over streams: no thread-pool work (see operations.ts).
 */
import { Readable } from 'node:stream';
import { LifeboatError } from '../core/errors.js';
import {
  BLOCK,
  ChunkReader,
  checksum,
  field,
  numberField,
  padding,
  parsePax,
  paxHeader,
  putOctal,
  putString,
  truncated,
  type PaxRecord,
} from './tar-format.js';

const HOLE_UNIT = 4096;
const SPARSE_MIN_HOLES = 32 * 1024;
const HELD_DATA_MAX = 32 * 1024 * 1024;
const ZERO_UNIT = Buffer.alloc(HOLE_UNIT);
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
const ZERO_BLOCK = Buffer.alloc(BLOCK);
const COALESCE_BYTES = 256 * 1024;

/** A member's head: its ustar header, its pax records, and its name and link as the records make them. */
interface Member {
  readonly header: Buffer;
  readonly records: PaxRecord[];
  readonly name: string;
  readonly linkname: string;
  /** Bytes of data that follow the header in the archive. */
  readonly size: number;
  /** The head as it was read (extended headers and the ustar header), to pass on when nothing in it changes. */
  readonly raw: readonly Buffer[];
}

const typeflagOf = (m: Member): string => String.fromCharCode(m.header[156]!);
const isRegular = (m: Member): boolean => ['0', '\0', '7'].includes(typeflagOf(m));

function withRecord(records: PaxRecord[], key: string, value: string | undefined): PaxRecord[] {
  const rest = records.filter(([k]) => k !== key);
  return value === undefined ? rest : [...rest, [key, Buffer.from(value, 'utf8')]];
}

/**
 * The member's head as it goes out: a pax header with its records (`path`
 * set to `paxPath`, or dropped when undefined), then its ustar header.
 */
function head(m: Member, ustarName: string, paxPath: string | undefined, linkname: string, size: number, extra: readonly PaxRecord[] = []): Buffer {
  const h = Buffer.from(m.header);
  const linked = ['1', '2'].includes(typeflagOf(m));
  let records = withRecord(m.records, 'path', paxPath);
  if (linked) records = withRecord(records, 'linkpath', linkname);
  putString(h, 0, 100, ustarName);
  h.fill(0, 345, 500); // prefix: the pax path holds the whole name
  if (linked) putString(h, 157, 100, linkname);
  records = withRecord(records, 'size', putOctal(h, 124, 12, size) ? undefined : String(size));
  checksum(h);
  return Buffer.concat([paxHeader([...records, ...extra], ustarName), h]);
}

/** Reads the next member's head (pax and GNU long-name headers folded in); undefined at the archive's end. */
async function readHead(r: ChunkReader): Promise<Member | undefined> {
  let records: PaxRecord[] = [];
  let longName: string | undefined;
  let longLink: string | undefined;
  const raw: Buffer[] = [];
  for (;;) {
    const h = await r.exact(BLOCK);
    if (h === undefined || h.equals(ZERO_BLOCK)) return undefined;
    raw.push(h);
    const type = String.fromCharCode(h[156]!);
    const size = numberField(h, 124, 12);
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      const data = (await r.exact(size + padding(size))) ?? Buffer.alloc(0);
      raw.push(data);
      const body = data.subarray(0, size);
      if (type === 'x') records = [...records, ...parsePax(body)];
      else if (type === 'L') longName = field(body, 0, body.length);
      else if (type === 'K') longLink = field(body, 0, body.length);
      // A global header ('g') says nothing tar-out's members need: dropped.
      continue;
    }
    const rec = (k: string): string | undefined => records.find(([key]) => key === k)?.[1].toString('utf8');
    const prefix = field(h, 345, 155);
    const ustarName = prefix !== '' ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100);
    const paxSize = rec('size');
    return {
      header: Buffer.from(h),
      records,
      name: rec('path') ?? longName ?? ustarName,
      linkname: rec('linkpath') ?? longLink ?? field(h, 157, 100),
      size: paxSize !== undefined ? Number(paxSize) : size,
      raw,
    };
  }
}

/** `./x/y` of tar-out under the archive's top entry: `<top>/x/y` (`.` keeps the names). */
function underTop(name: string, top: string): string {
  if (top === '.') return name;
  const rel = name.replace(/^(\.\/)+/, '').replace(/^\.$/, '');
  return rel === '' ? `${top}/` : `${top}/${rel}`;
}

/** Data segments of a member (offset, bytes) with the zero blocks left out. */
interface Held {
  readonly segments: { offset: number; data: Buffer[]; length: number }[];
  heldBytes: number;
}

async function* passData(r: ChunkReader, n: number): AsyncGenerator<Buffer> {
  let left = n;
  while (left > 0) {
    const c = await r.some(left);
    left -= c.length;
    yield c;
  }
}

function* zerosOf(n: number): Generator<Buffer> {
  for (let left = n; left > 0; left -= HOLE_UNIT) yield left >= HOLE_UNIT ? ZERO_UNIT : ZERO_UNIT.subarray(0, left);
}

/** A regular member written out: sparse when its zero blocks add up to enough, else as it is (see the file's comment). */
async function* regular(r: ChunkReader, m: Member, name: string, keepHead: boolean): AsyncGenerator<Buffer> {
  // A member smaller than SPARSE_MIN_HOLES can never hold enough holes to go out sparse: its data passes as it came,
  // without the look at each 4 KiB (most of a folder's members are such: the rewrite of 10,000 small files took 0.30 s
  // of CPU with the look, 0.21 s without).
  if (m.size < SPARSE_MIN_HOLES) {
    yield* keepHead ? m.raw : [head(m, name, name, m.linkname, m.size)];
    yield* passData(r, m.size + padding(m.size));
    return;
  }
  const held: Held = { segments: [], heldBytes: 0 };
  let at = 0;
  while (at < m.size && held.heldBytes <= HELD_DATA_MAX) {
    // Undefined: the input ended where this unit would start, inside the member.
    const unit = await r.exact(Math.min(HOLE_UNIT, m.size - at));
    if (unit === undefined) throw truncated();
    if (unit.length === HOLE_UNIT && unit.equals(ZERO_UNIT)) {
      at += unit.length;
      continue;
    }
    const last = held.segments[held.segments.length - 1];
    const copy = Buffer.from(unit);
    if (last !== undefined && last.offset + last.length === at) {
      last.data.push(copy);
      last.length += copy.length;
    } else held.segments.push({ offset: at, data: [copy], length: copy.length });
    held.heldBytes += copy.length;
    at += unit.length;
  }
  const holes = at - held.heldBytes;
  if (at === m.size && holes >= SPARSE_MIN_HOLES) {
    yield* sparse(m, name, held);
    // The member's padding is part of it: an input that ends before it was cut short.
    if ((await r.exact(padding(m.size))) === undefined) throw truncated();
    return;
  }
  // As it is: what was held, with its holes as zeros, then the rest as it comes.
  yield* keepHead ? m.raw : [head(m, name, name, m.linkname, m.size)];
  let written = 0;
  for (const s of held.segments) {
    yield* zerosOf(s.offset - written);
    yield Buffer.concat(s.data);
    written = s.offset + s.length;
  }
  yield* zerosOf(at - written);
  // The rest of the data and the input's padding, which is the member's own.
  yield* passData(r, m.size - at + padding(m.size));
}

/** GNU pax sparse 1.0: records naming the real file, a map (decimal lines, padded to a block), the data segments. */
function* sparse(m: Member, name: string, held: Held): Generator<Buffer> {
  const map = held.segments.map((s) => [s.offset, s.length] as const);
  const lastEnd = map.length > 0 ? map[map.length - 1]![0] + map[map.length - 1]![1] : 0;
  // A file that ends in a hole ends its map with an empty segment at its size, so extraction gives the file its length.
  if (lastEnd < m.size || map.length === 0) map.push([m.size, 0]);
  const mapText = Buffer.from(`${map.length}\n${map.map(([o, n]) => `${o}\n${n}\n`).join('')}`, 'ascii');
  const mapBlock = Buffer.concat([mapText, Buffer.alloc(padding(mapText.length))]);
  const stored = mapBlock.length + held.heldBytes;
  const slash = name.replace(/\/$/, '').lastIndexOf('/');
  const storedName = `${slash >= 0 ? name.slice(0, slash) : '.'}/GNUSparseFile.0/${name.slice(slash + 1)}`;
  const records: PaxRecord[] = [
    ['GNU.sparse.major', Buffer.from('1')],
    ['GNU.sparse.minor', Buffer.from('0')],
    ['GNU.sparse.name', Buffer.from(name, 'utf8')],
    ['GNU.sparse.realsize', Buffer.from(String(m.size))],
  ];
  yield head(m, storedName, undefined, m.linkname, stored, records);
  yield mapBlock;
  for (const s of held.segments) yield Buffer.concat(s.data);
  yield Buffer.alloc(padding(stored));
}

/**
 * An archive written again member by member: names under `top` (see
 * underTop), holes of regular members taken out (see the file's comment).
 * Ends with tar's end-of-archive blocks after reading its input to the end.
 */
export function rewriteArchive(input: AsyncIterable<Buffer>, top: string): Readable {
  async function* run(): AsyncGenerator<Buffer> {
    const r = new ChunkReader(input);
    for (;;) {
      const m = await readHead(r);
      if (m === undefined) break;
      const name = underTop(m.name, top);
      // Under `.` the names stay: a head is passed on as it was read unless its member becomes sparse.
      const keepHead = top === '.';
      if (isRegular(m)) {
        yield* regular(r, m, name, keepHead);
        continue;
      }
      const link = typeflagOf(m) === '1' ? underTop(m.linkname, top) : m.linkname;
      yield* keepHead ? m.raw : [head(m, name, name, link, m.size)];
      yield* passData(r, m.size + padding(m.size));
    }
    await r.drain();
    yield END_OF_ARCHIVE;
  }
  return Readable.from(coalesced(run()), { objectMode: false });
}

/** Pieces of at least COALESCE_BYTES: a member is a few small buffers, and each write to a pipe or an HTTP response costs a system call (and a chunk's framing), which made a folder of 10,000 small files 3.6 times slower to extract. */
async function* coalesced(pieces: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let held: Buffer[] = [];
  let bytes = 0;
  for await (const p of pieces) {
    if (bytes === 0 && p.length >= COALESCE_BYTES) {
      yield p;
      continue;
    }
    held.push(p);
    bytes += p.length;
    if (bytes >= COALESCE_BYTES) {
      yield Buffer.concat(held, bytes);
      held = [];
      bytes = 0;
    }
  }
  if (bytes > 0) yield Buffer.concat(held, bytes);
}

/** What a single member is made from: the guest's lstat, and a symlink's target. */
export interface MemberStat {
  readonly type: 'file' | 'symlink' | 'directory' | 'block-device' | 'char-device' | 'fifo' | 'socket';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  readonly rdev: number;
  readonly target?: string;
}

const TYPEFLAGS: Record<MemberStat['type'], string | undefined> = {
  file: '0',
  symlink: '2',
  directory: '5',
  'char-device': '3',
  'block-device': '4',
  fifo: '6',
  socket: undefined,
};

/** An archive of one member `name` (a file's bytes from `data`), as GNU tar would write it in pax format. */
export function singleMemberArchive(name: string, st: MemberStat, data: AsyncIterable<Buffer> | undefined): Readable {
  const flag = TYPEFLAGS[st.type];
  if (flag === undefined) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${name} is a socket: tar has no member for one`);
  const size = st.type === 'file' ? st.size : 0;
  const h = Buffer.alloc(BLOCK);
  putString(h, 0, 100, name);
  putOctal(h, 100, 8, st.mode & 0o7777);
  const records: PaxRecord[] = [['mtime', Buffer.from(`${st.mtimeSec}.${String(st.mtimeNsec).padStart(9, '0')}`)]];
  if (!putOctal(h, 108, 8, st.uid)) records.push(['uid', Buffer.from(String(st.uid))]);
  if (!putOctal(h, 116, 8, st.gid)) records.push(['gid', Buffer.from(String(st.gid))]);
  putOctal(h, 124, 12, size);
  putOctal(h, 136, 12, st.mtimeSec);
  h[156] = flag.charCodeAt(0);
  h.write('ustar\u000000', 257, 'binary');
  // Linux's dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
  const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn) | Number((BigInt(st.rdev) >> 32n) & ~0xfffn);
  const minor = Number(BigInt(st.rdev) & 0xffn) | Number((BigInt(st.rdev) >> 12n) & ~0xffn);
  if (flag === '3' || flag === '4') {
    putOctal(h, 329, 8, major);
    putOctal(h, 337, 8, minor);
  }
  const m: Member = { header: h, records, name, linkname: st.target ?? '', size, raw: [] };
  async function* run(): AsyncGenerator<Buffer> {
    yield head(m, name, name, m.linkname, size);
    if (data !== undefined) {
      let n = 0;
      for await (const c of data) {
        n += (c as Buffer).length;
        yield c as Buffer;
      }
      if (n !== size) throw new LifeboatError('LFB_ERR_TOOL_FAILED', `${name}: the appliance sent ${n} bytes of ${size}`);
    }
    yield Buffer.alloc(padding(size));
    yield END_OF_ARCHIVE;
  }
  return Readable.from(run(), { objectMode: false });
}
