/**
 * ONC RPC record marking over TCP (RFC 5531 §11): a record is one or more
 * fragments, each a 4-byte header (bit 31 = last fragment, bits 0-30 =
 * length) and its bytes. The reader knows nothing of sockets: push() it
 * whatever arrived and pull whole records with next(), or feed() to get every
 * record the bytes complete.
 *
 * Memory is what a hostile peer aims at, so the reader keeps no object per
 * fragment or per received chunk beyond the chunks not yet parsed: fragment
 * bytes are copied into one assembly buffer that grows with the bytes that
 * actually arrived (never past the record cap), and a record may have at most
 * `maxFragments` fragments, empty ones included. A record that arrives whole
 * in one chunk, the usual case, is handed out as a view of that chunk, without
 * a copy.
 */

/** A stream that breaks the record-marking rules or limits; the connection is closed. */
export class RecordMarkingError extends Error {
  override readonly name: string = 'RecordMarkingError';
}

/** A record longer than the reader's cap. */
export class RecordTooLargeError extends RecordMarkingError {
  override readonly name = 'RecordTooLargeError';
}

const LAST = 0x80000000;
const LENGTH_MASK = 0x7fffffff;

/**
 * Fragments per record when the caller does not say. Real clients cut a record
 * into few fragments (libtirpc sends up to 64 KiB per fragment, the Linux and
 * ESXi clients one fragment per record); 1024 leaves room for 1 KiB fragments
 * of a 1 MiB WRITE.
 */
export const DEFAULT_MAX_FRAGMENTS = 1024;

export interface RecordReaderOptions {
  /** Fragments one record may have, empty ones included; more is a protocol violation. */
  readonly maxFragments?: number;
}

export class RecordReader {
  private readonly maxFragments: number;
  /** Received chunks not yet parsed; `inputOffset` bytes of the first are already consumed. */
  private inputs: Buffer[] = [];
  private inputOffset = 0;
  private inputBytes = 0;
  /** The header being read (it may arrive split across chunks). */
  private readonly header = Buffer.alloc(4);
  private headerHave = 0;
  /** Bytes of the current fragment still to come; -1 while reading a header. */
  private fragmentLeft = -1;
  private fragmentIsLast = false;
  /** Fragments of the record being assembled, including the current one. */
  private fragments = 0;
  /** The record being assembled: its first `recordBytes` bytes are filled. */
  private assembly: Buffer | undefined;
  private recordBytes = 0;
  /** A record's declared length so far (fragment headers seen), checked against the cap. */
  private declaredBytes = 0;

  /** `maxRecord`: the largest record accepted; more is a protocol violation (the connection is closed). */
  constructor(
    private readonly maxRecord: number,
    opts: RecordReaderOptions = {},
  ) {
    this.maxFragments = opts.maxFragments ?? DEFAULT_MAX_FRAGMENTS;
  }

  /** Adds bytes; returns every record they complete, in order. Throws RecordMarkingError. */
  feed(chunk: Buffer): Buffer[] {
    this.push(chunk);
    const out: Buffer[] = [];
    for (let r = this.next(); r !== undefined; r = this.next()) out.push(r);
    return out;
  }

  /** Queues bytes without parsing them; next() parses. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.inputs.push(chunk);
    this.inputBytes += chunk.length;
  }

  /** The next complete record, or undefined until more bytes arrive. Throws RecordMarkingError. */
  next(): Buffer | undefined {
    while (this.inputBytes > 0) {
      if (this.fragmentLeft < 0) {
        const whole = this.wholeRecordInFirstInput();
        if (whole) return whole;
        this.readHeader();
        if (this.fragmentLeft < 0) return undefined;
      }
      this.copyFragmentBytes();
      if (this.fragmentLeft === 0) {
        this.fragmentLeft = -1;
        if (this.fragmentIsLast) return this.finishRecord();
      }
    }
    return undefined;
  }

  /** Bytes received but not yet handed out as part of a record. */
  get buffered(): number {
    return this.inputBytes + this.headerHave + this.recordBytes;
  }

  /** Memory the reader holds for the peer: unparsed chunks plus the assembly buffer's size. */
  get heldBytes(): number {
    return this.inputBytes + (this.assembly?.length ?? 0);
  }

  /**
   * The fast path: at a record boundary, a first chunk holding a complete
   * single-fragment record gives that record as a view of the chunk.
   */
  private wholeRecordInFirstInput(): Buffer | undefined {
    if (this.headerHave !== 0 || this.fragments !== 0) return undefined;
    const first = this.inputs[0]!;
    const start = this.inputOffset;
    if (first.length - start < 4) return undefined;
    const word = first.readUInt32BE(start);
    const length = word & LENGTH_MASK;
    if ((word & LAST) === 0 || first.length - start - 4 < length) return undefined;
    if (length > this.maxRecord) return undefined; // the slow path reports it
    this.consume(4 + length);
    return first.subarray(start + 4, start + 4 + length);
  }

  private readHeader(): void {
    while (this.headerHave < 4 && this.inputBytes > 0) {
      const first = this.inputs[0]!;
      this.header[this.headerHave++] = first[this.inputOffset]!;
      this.consume(1);
    }
    if (this.headerHave < 4) return;
    this.headerHave = 0;
    const word = this.header.readUInt32BE(0);
    const length = word & LENGTH_MASK;
    this.fragments += 1;
    if (this.fragments > this.maxFragments) {
      throw new RecordMarkingError(`RPC record of more than ${this.maxFragments} fragments`);
    }
    if (this.declaredBytes + length > this.maxRecord) {
      throw new RecordTooLargeError(`RPC record of more than ${this.maxRecord} bytes (fragment of ${length} after ${this.declaredBytes})`);
    }
    this.declaredBytes += length;
    this.fragmentLeft = length;
    this.fragmentIsLast = (word & LAST) !== 0;
  }

  /** Copies what has arrived of the current fragment into the assembly buffer. */
  private copyFragmentBytes(): void {
    while (this.fragmentLeft > 0 && this.inputBytes > 0) {
      const first = this.inputs[0]!;
      const n = Math.min(this.fragmentLeft, first.length - this.inputOffset);
      this.reserve(this.recordBytes + n);
      first.copy(this.assembly!, this.recordBytes, this.inputOffset, this.inputOffset + n);
      this.recordBytes += n;
      this.fragmentLeft -= n;
      this.consume(n);
    }
  }

  /**
   * Grows the assembly buffer to hold `needed` bytes: to the exact size once
   * the last fragment's header is known, else by doubling (at most the cap),
   * so the buffer is never more than twice what the peer actually sent.
   */
  private reserve(needed: number): void {
    const have = this.assembly?.length ?? 0;
    if (needed <= have) return;
    const size = this.fragmentIsLast ? this.declaredBytes : Math.min(this.maxRecord, Math.max(needed, 2 * have, 256));
    const grown = Buffer.allocUnsafe(size);
    if (this.assembly) this.assembly.copy(grown, 0, 0, this.recordBytes);
    this.assembly = grown;
  }

  private finishRecord(): Buffer {
    const record = this.assembly ? this.assembly.subarray(0, this.recordBytes) : Buffer.alloc(0);
    this.assembly = undefined;
    this.recordBytes = 0;
    this.declaredBytes = 0;
    this.fragments = 0;
    return record;
  }

  private consume(n: number): void {
    this.inputOffset += n;
    this.inputBytes -= n;
    while (this.inputs.length > 0 && this.inputOffset >= this.inputs[0]!.length) {
      this.inputOffset -= this.inputs[0]!.length;
      this.inputs.shift();
    }
  }
}

/** The header that makes `length` bytes one complete record (a single last fragment). */
export function recordHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE((LAST | length) >>> 0, 0);
  return h;
}
