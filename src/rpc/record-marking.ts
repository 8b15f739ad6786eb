/**
 * ONC RPC record marking over TCP (RFC 5531 §11): a record is one or more
 * fragments, each a 4-byte header (bit 31 = last fragment, bits 0-30 =
 * length) and its bytes. The reader is push-style and knows nothing of
 * sockets: feed() it whatever arrived, get whole records back.
 */

export class RecordTooLargeError extends Error {
  override readonly name = 'RecordTooLargeError';
}

const LAST = 0x80000000;

export class RecordReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Fragments of the record being assembled. */
  private fragments: Buffer[] = [];
  private recordBytes = 0;

  /** `maxRecord`: the largest record accepted; more is a protocol violation (the connection is closed). */
  constructor(private readonly maxRecord: number) {}

  /** Adds bytes; returns every record they complete, in order. Throws RecordTooLargeError. */
  feed(chunk: Buffer): Buffer[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.pendingBytes < 4) break;
      const head = this.peek(4);
      const word = head.readUInt32BE(0);
      const len = word & ~LAST & 0x7fffffff;
      if (this.recordBytes + len > this.maxRecord) {
        throw new RecordTooLargeError(`RPC record of more than ${this.maxRecord} bytes (fragment of ${len} after ${this.recordBytes})`);
      }
      if (this.pendingBytes < 4 + len) break;
      this.take(4);
      this.fragments.push(this.take(len));
      this.recordBytes += len;
      if ((word & LAST) !== 0) {
        out.push(this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments, this.recordBytes));
        this.fragments = [];
        this.recordBytes = 0;
      }
    }
    return out;
  }

  /** Bytes buffered but not yet part of a complete record. */
  get buffered(): number {
    return this.pendingBytes + this.recordBytes;
  }

  private peek(n: number): Buffer {
    if (this.pending[0]!.length >= n) return this.pending[0]!;
    this.pending = [Buffer.concat(this.pending)];
    return this.pending[0]!;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.pending[0]!;
    let out: Buffer;
    if (first.length > n) {
      out = first.subarray(0, n);
      this.pending[0] = first.subarray(n);
    } else if (first.length === n) {
      out = first;
      this.pending.shift();
    } else {
      const merged = Buffer.concat(this.pending);
      out = merged.subarray(0, n);
      this.pending = merged.length > n ? [merged.subarray(n)] : [];
    }
    this.pendingBytes -= n;
    return out;
  }
}

/** The header that makes `length` bytes one complete record (a single last fragment). */
export function recordHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE((LAST | length) >>> 0, 0);
  return h;
}
