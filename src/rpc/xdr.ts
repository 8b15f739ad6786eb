/**
 * XDR (RFC 4506) reading and writing: big-endian, 4-byte aligned. The reader
 * never trusts a length it reads: every variable-length item is checked against
 * its declared maximum and against the bytes left, before anything is
 * allocated, so a malformed request costs nothing but an error.
 */

/** Malformed XDR: the RPC layer answers GARBAGE_ARGS. */
export class XdrError extends Error {
  override readonly name = 'XdrError';
}

export class XdrReader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    offset = 0,
  ) {
    this.pos = offset;
  }

  get offset(): number {
    return this.pos;
  }

  /** A reader of the same bytes from here on, so a caller can look ahead without consuming. */
  fork(): XdrReader {
    return new XdrReader(this.buf, this.pos);
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, what: string): void {
    if (n > this.buf.length - this.pos) throw new XdrError(`${what}: needs ${n} bytes, ${this.buf.length - this.pos} left`);
  }

  u32(what = 'uint32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  i32(what = 'int32'): number {
    this.need(4, what);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(what = 'uint64'): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  bool(what = 'bool'): boolean {
    const v = this.u32(what);
    if (v > 1) throw new XdrError(`${what}: ${v} is not a boolean`);
    return v === 1;
  }

  /** Fixed-length opaque (padded to 4). Returns a view, not a copy. */
  fixedOpaque(n: number, what = 'opaque'): Buffer {
    // Arithmetic, not `(n + 3) & ~3`: bitwise operators are 32-bit signed and turn lengths ≥ 2^31 negative.
    const padded = n + ((4 - (n % 4)) % 4);
    this.need(padded, what);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += padded;
    return v;
  }

  /** Variable-length opaque<max>. Returns a view, not a copy. */
  opaque(max: number, what = 'opaque'): Buffer {
    const n = this.u32(`${what} length`);
    if (n > max) throw new XdrError(`${what}: length ${n} exceeds its maximum ${max}`);
    return this.fixedOpaque(n, what);
  }

  string(max: number, what = 'string'): string {
    return this.opaque(max, what).toString('utf8');
  }

  /** Throws unless every byte was consumed (trailing garbage is malformed input). */
  end(what = 'arguments'): void {
    if (this.pos !== this.buf.length) throw new XdrError(`${what}: ${this.buf.length - this.pos} unexpected trailing bytes`);
  }
}

/**
 * Builds an XDR message as a list of chunks, so large payloads (READ data) are
 * referenced, not copied, and go out in one writev.
 */
export class XdrWriter {
  private readonly chunks: Buffer[] = [];
  /** Called once the message has been sent or dropped: gives back bytes it references that were only lent. */
  private whenSent: (() => void)[] | undefined;
  private cur = Buffer.allocUnsafe(256);
  private used = 0;
  private total = 0;

  private room(n: number): void {
    if (this.used + n <= this.cur.length) return;
    this.flushCurrent();
    this.cur = Buffer.allocUnsafe(Math.max(256, n));
  }

  private flushCurrent(): void {
    if (this.used > 0) this.chunks.push(this.cur.subarray(0, this.used));
    this.cur = Buffer.allocUnsafe(256);
    this.used = 0;
  }

  get length(): number {
    return this.total;
  }

  u32(v: number): this {
    this.room(4);
    this.cur.writeUInt32BE(v >>> 0, this.used);
    this.used += 4;
    this.total += 4;
    return this;
  }

  i32(v: number): this {
    this.room(4);
    this.cur.writeInt32BE(v, this.used);
    this.used += 4;
    this.total += 4;
    return this;
  }

  u64(v: bigint | number): this {
    this.room(8);
    this.cur.writeBigUInt64BE(BigInt(v), this.used);
    this.used += 8;
    this.total += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.u32(v ? 1 : 0);
  }

  /** Fixed-length opaque, padded. Large data is referenced, not copied. */
  fixedOpaque(data: Buffer): this {
    return this.fixedOpaqueParts([data], data.length);
  }

  opaque(data: Buffer): this {
    return this.u32(data.length).fixedOpaque(data);
  }

  /** Variable-length opaque whose bytes are `parts` in order (`length` in all), padded once at the end. */
  opaqueParts(parts: readonly Buffer[], length: number): this {
    return this.u32(length).fixedOpaqueParts(parts, length);
  }

  private fixedOpaqueParts(parts: readonly Buffer[], length: number): this {
    const pad = (4 - (length & 3)) & 3;
    for (const data of parts) {
      if (data.length >= 1024) {
        this.flushCurrent();
        this.chunks.push(data);
      } else {
        this.room(data.length);
        data.copy(this.cur, this.used);
        this.used += data.length;
      }
    }
    if (pad) {
      this.room(pad);
      this.cur.fill(0, this.used, this.used + pad);
      this.used += pad;
    }
    this.total += length + pad;
    return this;
  }

  string(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }

  /** `fn` runs once the message has been sent or dropped (see sent()). */
  onSent(fn: () => void): this {
    (this.whenSent ??= []).push(fn);
    return this;
  }

  /** The message is in the kernel, or will never be sent: what onSent registered runs, once. */
  sent(): void {
    const fns = this.whenSent;
    this.whenSent = undefined;
    for (const fn of fns ?? []) fn();
  }

  /** The message as chunks (for writev). */
  toChunks(): Buffer[] {
    this.flushCurrent();
    return this.chunks;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.toChunks());
  }
}
