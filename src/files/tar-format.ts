/**
 * tar's on-disk format, as much of it as tar-stream.ts reads and writes:
 * ustar header fields (octal, base-256 when large), checksums, pax
 * extended headers (records as bytes: an xattr's value is binary), and a
 * reader of exact byte counts over a stream of chunks.
 */
import { LifeboatError } from '../core/errors.js';

export const BLOCK = 512;

export type PaxRecord = readonly [key: string, value: Buffer];

export const padding = (n: number): number => (BLOCK - (n % BLOCK)) % BLOCK;

export function truncated(): LifeboatError {
  return new LifeboatError('LFB_ERR_TOOL_FAILED', "the appliance's archive ended in the middle of a member");
}

/** Reads exact byte counts from a stream of chunks, without copying when a chunk holds them. */
export class ChunkReader {
  private readonly chunks: Buffer[] = [];
  private offset = 0;
  private length = 0;
  private ended = false;
  private readonly it: AsyncIterator<Buffer>;

  constructor(src: AsyncIterable<Buffer>) {
    this.it = src[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.length < n && !this.ended) {
      const r = await this.it.next();
      if (r.done === true) this.ended = true;
      else if (r.value.length > 0) {
        this.chunks.push(r.value);
        this.length += r.value.length;
      }
    }
    return this.length >= n;
  }

  /** n bytes, or undefined when the input ends before any byte of them; a partial end throws. */
  async exact(n: number): Promise<Buffer | undefined> {
    if (n === 0) return Buffer.alloc(0);
    if (!(await this.fill(n))) {
      if (this.length === 0) return undefined;
      throw truncated();
    }
    const first = this.chunks[0]!;
    if (first.length - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const c = this.chunks[0]!;
      const take = Math.min(n - done, c.length - this.offset);
      c.copy(out, done, this.offset, this.offset + take);
      done += take;
      this.advance(take);
    }
    return out;
  }

  /** Up to n bytes (at least one), as they come. */
  async some(n: number): Promise<Buffer> {
    if (!(await this.fill(1))) throw truncated();
    const c = this.chunks[0]!;
    const take = Math.min(n, c.length - this.offset);
    const out = c.subarray(this.offset, this.offset + take);
    this.advance(take);
    return out;
  }

  private advance(n: number): void {
    this.offset += n;
    this.length -= n;
    if (this.offset === this.chunks[0]!.length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }

  /** Reads the rest of the input (the appliance's last record), so its writer never meets a closed pipe. */
  async drain(): Promise<void> {
    this.chunks.length = 0;
    this.length = 0;
    while (!this.ended) if ((await this.it.next()).done === true) this.ended = true;
  }
}

export function field(h: Buffer, at: number, len: number): string {
  const raw = h.subarray(at, at + len);
  const nul = raw.indexOf(0);
  return (nul >= 0 ? raw.subarray(0, nul) : raw).toString('utf8');
}

export function numberField(h: Buffer, at: number, len: number): number {
  if ((h[at]! & 0x80) !== 0) {
    // base-256, big-endian, for values the octal field cannot hold
    let v = h[at]! & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + h[at + i]!;
    return v;
  }
  const text = field(h, at, len).trim();
  return text === '' ? 0 : parseInt(text, 8);
}

export function putString(h: Buffer, at: number, len: number, text: string): void {
  h.fill(0, at, at + len);
  let b = Buffer.from(text, 'utf8');
  if (b.length > len) {
    // Cut on a character boundary: readers take the whole name from the pax record.
    let end = len;
    while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
    b = b.subarray(0, end);
  }
  b.copy(h, at);
}

/** An octal field; false when the value does not fit (the pax record carries it then). */
export function putOctal(h: Buffer, at: number, len: number, value: number): boolean {
  const text = Math.max(0, Math.floor(value)).toString(8);
  if (text.length > len - 1) {
    h.fill(0x30, at, at + len - 1);
    h[at + len - 1] = 0;
    return false;
  }
  h.write(text.padStart(len - 1, '0'), at, 'ascii');
  h[at + len - 1] = 0;
  return true;
}

export function checksum(h: Buffer): void {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.write(sum.toString(8).padStart(6, '0'), 148, 'ascii');
  h[154] = 0;
  h[155] = 0x20;
}

export function parsePax(data: Buffer): PaxRecord[] {
  const out: PaxRecord[] = [];
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space < 0) break;
    const len = parseInt(data.toString('ascii', at, space), 10);
    if (!(len > 0) || at + len > data.length) break;
    const rec = data.subarray(space + 1, at + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq > 0) out.push([rec.toString('utf8', 0, eq), Buffer.from(rec.subarray(eq + 1))]);
    at += len;
  }
  return out;
}

export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'ascii'), body]);
}

/** A pax extended header ('x') member carrying `records`, for the member after it. */
export function paxHeader(records: readonly PaxRecord[], name: string): Buffer {
  const data = Buffer.concat(records.map(([k, v]) => paxRecord(k, v)));
  const h = Buffer.alloc(BLOCK);
  putString(
    h,
    0,
    100,
    `PaxHeaders/${
      name
        .split('/')
        .filter((x) => x !== '')
        .pop() ?? 'x'
    }`,
  );
  putOctal(h, 100, 8, 0o644);
  putOctal(h, 108, 8, 0);
  putOctal(h, 116, 8, 0);
  putOctal(h, 124, 12, data.length);
  putOctal(h, 136, 12, 0);
  h[156] = 0x78; // 'x'
  h.write('ustar\u000000', 257, 'binary');
  checksum(h);
  return Buffer.concat([h, data, Buffer.alloc(padding(data.length))]);
}
