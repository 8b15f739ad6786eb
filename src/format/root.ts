import { LifeboatError } from '../core/errors.js';
import { BlockTable } from './block-table.js';
import { sha256 } from './checksum.js';
import { ENTRY_SIZE, FILE_KINDS, MAX_DISKS, ROOT_MAGIC, type FileKind } from './constants.js';

/**
 * The root: everything a file currently holds. Written after the data it
 * references, fsynced, then committed by a slot. A merge writes a new root to
 * the same file; the old one stays until no slot names it.
 *
 * Layout: 0 magic · 8 u16 rootVersion · 10 u8 kind · 11 u8 reserved ·
 * 12 u32 seq · 16 u64 createdAtMs · 24 [8] pointId · 32 [8] parentPointId ·
 * 40 u32 mergedCount · 44 u16 diskCount · 46 u16 reserved · 48 u32 metaLength ·
 * 52 u32 reserved · 56 per disk { u64 size, u32 entryCount, u32 reserved } ·
 * meta JSON (UTF-8, padded to 8) · per disk: entryCount × 56-byte entries.
 * Its SHA-256 is kept in the slot that commits it.
 */
export interface RootInfo {
  readonly kind: FileKind;
  /** The point's sequence number in its job; increases with every point. */
  readonly seq: number;
  readonly createdAtMs: number;
  readonly pointId: string;
  /** The point this one is a delta against (increments), or null. */
  readonly parentPointId: string | null;
  /** How many increments have been merged into this full. */
  readonly mergedCount: number;
  readonly diskSizes: readonly number[];
  readonly meta: RootMeta;
}

/** Free-form, versioned-by-key JSON stored in the root. */
export interface RootMeta {
  readonly vm: VmConfig;
  /** Point ids merged into this file over time, oldest first (forever-forward). */
  readonly mergedPointIds?: readonly string[];
  /** Reason for this point: "scheduled", "manual", "active-full"… */
  readonly trigger?: string;
  /**
   * A synthetic full: the chain it was built from and that chain's newest
   * point before it (the one a transform links the new rollbacks to).
   */
  readonly synthesizedFrom?: { readonly chainId: string; readonly previousPointId: string };
  /** Per disk: how this run found what changed (full read, hash compare, or a dirty bitmap), and the bitmap for the next run. */
  readonly changes?: readonly { readonly method: 'full' | 'hash' | 'cbt'; readonly bitmap?: string; readonly note?: string }[];
}

export interface VmDiskConfig {
  readonly name: string;
  readonly bus: 'virtio' | 'scsi' | 'sata' | 'ide' | 'nvme';
  readonly sizeBytes: number;
  readonly source?: string;
  /** The source's format (raw, qcow2, vmdk, vhdx, …; nbd for an export): what restore writes by default. */
  readonly format?: string;
}

export interface VmConfig {
  readonly name: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly firmware: 'bios' | 'uefi';
  readonly machine?: string;
  readonly disks: readonly VmDiskConfig[];
}

export interface Root extends RootInfo {
  readonly tables: readonly BlockTable[];
}

const FIXED = 56;
const PER_DISK = 16;

function pointIdBytes(id: string | null): Buffer {
  const b = Buffer.alloc(8);
  if (id !== null) Buffer.from(id, 'hex').copy(b);
  return b;
}

function pointIdFromBytes(b: Buffer): string | null {
  if (b.every((x) => x === 0)) return null;
  return b.subarray(0, 6).toString('hex');
}

export function encodeRoot(info: RootInfo, tables: readonly BlockTable[]): Buffer {
  if (tables.length !== info.diskSizes.length) throw new RangeError('one table per disk');
  const meta = Buffer.from(JSON.stringify(info.meta), 'utf8');
  const metaPadded = Math.ceil(meta.length / 8) * 8;
  const entries = tables.reduce((n, t) => n + t.entries.length, 0);
  const b = Buffer.alloc(FIXED + PER_DISK * tables.length + metaPadded + entries);
  ROOT_MAGIC.copy(b, 0);
  b.writeUInt16LE(1, 8);
  b.writeUInt8(FILE_KINDS.indexOf(info.kind) + 1, 10);
  b.writeUInt32LE(info.seq, 12);
  b.writeBigUInt64LE(BigInt(info.createdAtMs), 16);
  pointIdBytes(info.pointId).copy(b, 24);
  pointIdBytes(info.parentPointId).copy(b, 32);
  b.writeUInt32LE(info.mergedCount, 40);
  b.writeUInt16LE(tables.length, 44);
  b.writeUInt32LE(meta.length, 48);
  let at = FIXED;
  tables.forEach((t, i) => {
    b.writeBigUInt64LE(BigInt(info.diskSizes[i]!), at);
    b.writeUInt32LE(t.count, at + 8);
    at += PER_DISK;
  });
  meta.copy(b, at);
  at += metaPadded;
  for (const t of tables) {
    t.entries.copy(b, at);
    at += t.entries.length;
  }
  return b;
}

export function rootDigest(root: Buffer): Buffer {
  return sha256(root);
}

function corrupt(name: string, what: string): LifeboatError {
  return new LifeboatError(
    'LFB_ERR_FILE_CORRUPT',
    `${name}: metadata root ${what}; the file is damaged (run \`lifeboat points\` to see which restore points depend on it)`,
    { details: { file: name } },
  );
}

/** Decodes a root whose digest was already checked against its slot. */
export function decodeRoot(b: Buffer, name: string): Root {
  if (b.length < FIXED || !b.subarray(0, 8).equals(ROOT_MAGIC)) throw corrupt(name, 'has a bad magic');
  if (b.readUInt16LE(8) !== 1)
    throw new LifeboatError('LFB_ERR_FILE_VERSION', `${name}: root version ${b.readUInt16LE(8)} is not supported`, { details: { file: name } });
  const kind = FILE_KINDS[b.readUInt8(10) - 1];
  const diskCount = b.readUInt16LE(44);
  if (kind === undefined || diskCount === 0 || diskCount > MAX_DISKS) throw corrupt(name, 'has an invalid kind or disk count');
  const metaLength = b.readUInt32LE(48);
  let at = FIXED;
  const diskSizes: number[] = [];
  const counts: number[] = [];
  if (at + PER_DISK * diskCount > b.length) throw corrupt(name, 'is shorter than its disk list');
  for (let i = 0; i < diskCount; i++) {
    diskSizes.push(Number(b.readBigUInt64LE(at)));
    counts.push(b.readUInt32LE(at + 8));
    at += PER_DISK;
  }
  if (at + metaLength > b.length) throw corrupt(name, 'is shorter than its metadata');
  let meta: RootMeta;
  try {
    meta = JSON.parse(b.subarray(at, at + metaLength).toString('utf8')) as RootMeta;
  } catch {
    throw corrupt(name, 'holds unreadable metadata JSON');
  }
  at += Math.ceil(metaLength / 8) * 8;
  const tables: BlockTable[] = [];
  for (const n of counts) {
    const len = n * ENTRY_SIZE;
    if (at + len > b.length) throw corrupt(name, 'is shorter than its block tables');
    tables.push(new BlockTable(Buffer.from(b.subarray(at, at + len))));
    at += len;
  }
  if (at !== b.length) throw corrupt(name, 'has trailing bytes');
  return {
    kind,
    seq: b.readUInt32LE(12),
    createdAtMs: Number(b.readBigUInt64LE(16)),
    pointId: pointIdFromBytes(b.subarray(24, 32)) ?? '',
    parentPointId: pointIdFromBytes(b.subarray(32, 40)),
    mergedCount: b.readUInt32LE(40),
    diskSizes,
    meta,
    tables,
  };
}
