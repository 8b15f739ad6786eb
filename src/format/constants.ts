/** Layout constants of backup file format v1 (docs/format.md). */
export const FILE_MAGIC = Buffer.from('LFBACKUP', 'ascii');
export const SLOT_MAGIC = Buffer.from('LFBSLOT1', 'ascii');
export const ROOT_MAGIC = Buffer.from('LFBROOT1', 'ascii');

/** The version this code writes. Readers accept FORMAT_MIN..FORMAT_CURRENT. */
export const FORMAT_CURRENT = 1;
export const FORMAT_MIN = 1;

export const PAGE = 4096;
export const HEADER_OFFSET = 0;
export const SLOT_OFFSETS = [PAGE, 2 * PAGE] as const;
/** First byte of the data area: header page + two slot pages. */
export const DATA_START = 3 * PAGE;

export const FILE_KINDS = ['full', 'increment', 'rollback'] as const;
export type FileKind = (typeof FILE_KINDS)[number];
export const FILE_EXTENSIONS: Record<FileKind, string> = { full: '.vbk', increment: '.vib', rollback: '.vrb' };

export const CODECS = ['none', 'lz4', 'zstd'] as const;
export type CodecName = (typeof CODECS)[number];

export const BLOCK_SIZES = [256 * 1024, 512 * 1024, 1024 * 1024, 4 * 1024 * 1024] as const;
export const MAX_DISKS = 64;

/** Size of one block-table entry in bytes. */
export const ENTRY_SIZE = 56;
/** Entry flag: the block reads as zeros (an increment recording a block that became zero). */
export const ENTRY_FLAG_ZERO = 1;
