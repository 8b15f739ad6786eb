import { LifeboatError } from '../core/errors.js';
import { bytesToUuid, uuidToBytes } from '../core/ids.js';
import { sha256 } from './checksum.js';
import { FILE_KINDS, FILE_MAGIC, FORMAT_CURRENT, FORMAT_MIN, MAX_DISKS, PAGE, type FileKind } from './constants.js';

/**
 * The header page (offset 0, 4096 bytes). Written once when the file is
 * created and never changed: it says what the file is. What the file currently
 * holds is in the committed root (see slot.ts / root.ts).
 */
export interface FileHeader {
  readonly formatVersion: number;
  readonly kind: FileKind;
  readonly blockSize: number;
  readonly createdAtMs: number;
  readonly fileId: string;
  readonly chainId: string;
  readonly jobId: string;
  readonly diskSizes: readonly number[];
  /**
   * A sealed file (encrypted repository): the id of the key its blocks and
   * roots are sealed with. Byte 11 bit 0 says sealed, the id is at KEY_ID_AT.
   * Absent: a plain file, byte for byte as before encryption existed.
   */
  readonly keyId?: string | undefined;
}

const CHECKSUM_AT = PAGE - 32;
const SEALED_AT = 11;
const KEY_ID_AT = PAGE - 96;

export function encodeHeader(h: FileHeader): Buffer {
  if (h.diskSizes.length === 0 || h.diskSizes.length > MAX_DISKS) throw new RangeError(`disk count ${h.diskSizes.length}`);
  const b = Buffer.alloc(PAGE);
  FILE_MAGIC.copy(b, 0);
  b.writeUInt16LE(h.formatVersion, 8);
  b.writeUInt8(FILE_KINDS.indexOf(h.kind) + 1, 10);
  b.writeUInt32LE(h.blockSize, 12);
  b.writeBigUInt64LE(BigInt(h.createdAtMs), 16);
  uuidToBytes(h.fileId).copy(b, 24);
  uuidToBytes(h.chainId).copy(b, 40);
  uuidToBytes(h.jobId).copy(b, 56);
  b.writeUInt16LE(h.diskSizes.length, 72);
  h.diskSizes.forEach((s, i) => b.writeBigUInt64LE(BigInt(s), 80 + 8 * i));
  if (h.keyId !== undefined) {
    b[SEALED_AT] = 1;
    uuidToBytes(h.keyId).copy(b, KEY_ID_AT);
  }
  sha256(b.subarray(0, CHECKSUM_AT)).copy(b, CHECKSUM_AT);
  return b;
}

/** Decodes and validates a header page; `name` is used in error messages. */
export function decodeHeader(b: Buffer, name: string): FileHeader {
  if (b.length < PAGE) {
    throw new LifeboatError('LFB_ERR_FILE_TRUNCATED', `${name}: file is ${b.length} bytes, shorter than its header; the file is truncated`, {
      details: { file: name },
    });
  }
  if (!b.subarray(0, 8).equals(FILE_MAGIC)) {
    throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${name}: not a Lifeboat backup file (bad magic)`, { details: { file: name } });
  }
  if (!sha256(b.subarray(0, CHECKSUM_AT)).equals(b.subarray(CHECKSUM_AT, PAGE))) {
    throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${name}: header checksum mismatch; the file is damaged`, { details: { file: name, offset: 0 } });
  }
  const formatVersion = b.readUInt16LE(8);
  if (formatVersion < FORMAT_MIN || formatVersion > FORMAT_CURRENT) {
    throw new LifeboatError(
      'LFB_ERR_FILE_VERSION',
      `${name}: format version ${formatVersion} is not supported by this Lifeboat (reads ${FORMAT_MIN}..${FORMAT_CURRENT}); upgrade Lifeboat`,
      { details: { file: name, formatVersion } },
    );
  }
  const kind = FILE_KINDS[b.readUInt8(10) - 1];
  const diskCount = b.readUInt16LE(72);
  if (kind === undefined || diskCount === 0 || diskCount > MAX_DISKS) {
    throw new LifeboatError('LFB_ERR_FILE_CORRUPT', `${name}: header has an invalid kind or disk count`, { details: { file: name } });
  }
  const diskSizes: number[] = [];
  for (let i = 0; i < diskCount; i++) diskSizes.push(Number(b.readBigUInt64LE(80 + 8 * i)));
  return {
    formatVersion,
    kind,
    blockSize: b.readUInt32LE(12),
    createdAtMs: Number(b.readBigUInt64LE(16)),
    fileId: bytesToUuid(b.subarray(24, 40)),
    chainId: bytesToUuid(b.subarray(40, 56)),
    jobId: bytesToUuid(b.subarray(56, 72)),
    diskSizes,
    ...((b[SEALED_AT]! & 1) !== 0 ? { keyId: bytesToUuid(b.subarray(KEY_ID_AT, KEY_ID_AT + 16)) } : {}),
  };
}
