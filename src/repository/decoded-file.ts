import { crc32 } from '@node-rs/crc32';

/**
 * One file of the disk cache of decoded blocks (decoded-store.ts), named
 * `<dir>/<2 hex>/<digest hex>-<length>`.
 *
 * Layout: a header of HEADER_FIXED bytes (magic, version, log2 of the piece
 * size, data length, CRC-32 of the header), the CRC-32 of every PIECE_BYTES
 * piece of the data, padding to a multiple of 4 KiB, then the data. The
 * CRC-32 is zlib's polynomial, computed by @node-rs/crc32 at several GB/s
 * with the CPU's carry-less multiply.
 */

/** Data is checked in pieces of this size: a small random read reads and checks one piece, not the whole block. */
export const PIECE_BYTES = 16 * 1024;
export const PIECE_SHIFT = 14;
const MAGIC = 0x4c424443; // "LBDC"
const VERSION = 1;
const HEADER_FIXED = 16;
const ALIGN = 4096;

/** Bytes before the data: the header and the pieces' checksums, padded to ALIGN. */
export function headerBytes(length: number): number {
  const pieces = Math.ceil(length / PIECE_BYTES);
  return Math.ceil((HEADER_FIXED + 4 * pieces) / ALIGN) * ALIGN;
}

/** The header of a file holding `data`, `head` bytes long. */
export function encodeHeader(data: Buffer, head: number): Buffer {
  const header = Buffer.alloc(head);
  const n = Math.ceil(data.length / PIECE_BYTES);
  header.writeUInt32BE(MAGIC, 0);
  header.writeUInt16BE(VERSION, 4);
  header.writeUInt16BE(PIECE_SHIFT, 6);
  header.writeUInt32BE(data.length, 8);
  for (let i = 0; i < n; i++) header.writeUInt32BE(crc32(data.subarray(i * PIECE_BYTES, (i + 1) * PIECE_BYTES)), HEADER_FIXED + 4 * i);
  header.writeUInt32BE(headerCrc(header, n), 12);
  return header;
}

function headerCrc(header: Buffer, pieces: number): number {
  return crc32(header.subarray(HEADER_FIXED, HEADER_FIXED + 4 * pieces), crc32(header.subarray(0, 12)));
}

/** The pieces' checksums, or what is wrong with the header. */
export function parseHeader(file: Buffer, length: number): Uint32Array | string {
  const n = Math.ceil(length / PIECE_BYTES);
  if (file.length < HEADER_FIXED + 4 * n) return 'is shorter than its header';
  if (file.readUInt32BE(0) !== MAGIC || file.readUInt16BE(4) !== VERSION || file.readUInt16BE(6) !== PIECE_SHIFT) return 'has an unknown header';
  if (file.readUInt32BE(8) !== length) return `holds ${file.readUInt32BE(8)} bytes, not ${length}`;
  if (file.readUInt32BE(12) !== headerCrc(file, n)) return 'fails its header checksum';
  const pieces = new Uint32Array(n);
  for (let i = 0; i < n; i++) pieces[i] = file.readUInt32BE(HEADER_FIXED + 4 * i);
  return pieces;
}
