import { fromFsError } from '../core/errors.js';
import { localStorage, type OpenMode, type Storage, type StorageFile, type StorageOp } from '../storage/storage.js';

/**
 * What a failing call does. `EIO` and `ENOSPC` fail the call before it
 * reaches the inner storage. `short-write` (pwrite only) writes the first
 * half of the data and then fails with ENOSPC, as a disk that fills up in the
 * middle of a write does. `fsync-lost` (sync and datasync only) fails with EIO
 * after the inner sync: Linux reports a lost write-back once, and the caller
 * cannot know what reached the disk.
 */
export type Fault = 'EIO' | 'ENOSPC' | 'short-write' | 'fsync-lost';

export interface FaultRule {
  /** Which operations the rule counts (default: all). */
  readonly ops?: readonly StorageOp[];
  /** Which paths the rule counts (default: all). */
  readonly path?: RegExp;
  /** Fail the nth counted call (0-based); undefined = every counted call. */
  readonly nth?: number;
  readonly fault: Fault;
}

export interface StorageCall {
  readonly op: StorageOp;
  readonly path: string;
  /** The fault injected into this call, if any. */
  readonly fault?: Fault;
}

/**
 * A Storage that fails chosen calls (kopia's and restic's fault-injecting
 * test backends). Every call is logged in order, so a test can run an
 * operation once to count its calls and then run it again failing each one
 * in turn.
 */
export class FaultyStorage implements Storage {
  readonly calls: StorageCall[] = [];
  private readonly rules: { rule: FaultRule; seen: number }[] = [];

  constructor(private readonly inner: Storage = localStorage) {}

  /** Adds a rule; rules are checked in the order they were added, the first that fires wins. */
  fail(rule: FaultRule): this {
    this.rules.push({ rule, seen: 0 });
    return this;
  }

  /** Removes every rule (the log stays). */
  heal(): this {
    this.rules.length = 0;
    return this;
  }

  /** Counts the call against the rules; returns the fault to inject, if one fires. */
  decide(op: StorageOp, path: string): Fault | undefined {
    let fault: Fault | undefined;
    for (const r of this.rules) {
      if (r.rule.ops && !r.rule.ops.includes(op)) continue;
      if (r.rule.path && !r.rule.path.test(path)) continue;
      if (!applies(r.rule.fault, op)) continue;
      const n = r.seen++;
      if (fault === undefined && (r.rule.nth === undefined || r.rule.nth === n)) fault = r.rule.fault;
    }
    this.calls.push(fault === undefined ? { op, path } : { op, path, fault });
    return fault;
  }

  async open(path: string, mode: OpenMode): Promise<StorageFile> {
    const fault = this.decide('open', path);
    if (fault) throw injected(fault, 'open', path);
    return new FaultyFile(this, await this.inner.open(path, mode));
  }

  async rename(from: string, to: string): Promise<void> {
    const fault = this.decide('rename', from);
    if (fault) throw injected(fault, 'rename', from);
    return this.inner.rename(from, to);
  }

  async remove(path: string): Promise<boolean> {
    const fault = this.decide('remove', path);
    if (fault) throw injected(fault, 'remove', path);
    return this.inner.remove(path);
  }

  async list(dir: string): Promise<string[]> {
    const fault = this.decide('list', dir);
    if (fault) throw injected(fault, 'list', dir);
    return this.inner.list(dir);
  }

  async syncDir(dir: string): Promise<void> {
    const fault = this.decide('syncDir', dir);
    if (fault === 'fsync-lost') await this.inner.syncDir(dir);
    if (fault) throw injected(fault, 'fsync folder', dir);
    return this.inner.syncDir(dir);
  }

  async mkdir(dir: string): Promise<void> {
    const fault = this.decide('mkdir', dir);
    if (fault) throw injected(fault, 'create folder', dir);
    return this.inner.mkdir(dir);
  }
}

class FaultyFile implements StorageFile {
  constructor(
    private readonly storage: FaultyStorage,
    private readonly inner: StorageFile,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  async pread(into: Buffer, position: number): Promise<number> {
    const fault = this.storage.decide('pread', this.path);
    if (fault) throw injected(fault, 'read', this.path);
    return this.inner.pread(into, position);
  }

  async pwrite(data: Uint8Array, position: number): Promise<void> {
    const fault = this.storage.decide('pwrite', this.path);
    if (fault === 'short-write') {
      await this.inner.pwrite(data.subarray(0, data.length >> 1), position);
      throw injected('ENOSPC', 'write', this.path);
    }
    if (fault) throw injected(fault, 'write', this.path);
    return this.inner.pwrite(data, position);
  }

  async sync(): Promise<void> {
    const fault = this.storage.decide('sync', this.path);
    if (fault === 'fsync-lost') await this.inner.sync();
    if (fault) throw injected(fault, 'fsync', this.path);
    return this.inner.sync();
  }

  async datasync(): Promise<void> {
    const fault = this.storage.decide('datasync', this.path);
    if (fault === 'fsync-lost') await this.inner.datasync();
    if (fault) throw injected(fault, 'fdatasync', this.path);
    return this.inner.datasync();
  }

  async truncate(length: number): Promise<void> {
    const fault = this.storage.decide('truncate', this.path);
    if (fault) throw injected(fault, 'truncate', this.path);
    return this.inner.truncate(length);
  }

  async size(): Promise<number> {
    const fault = this.storage.decide('size', this.path);
    if (fault) throw injected(fault, 'stat', this.path);
    return this.inner.size();
  }

  async close(): Promise<void> {
    // A close always releases the descriptor, as close(2) does even when it reports an error.
    const fault = this.storage.decide('close', this.path);
    await this.inner.close();
    if (fault) throw injected(fault, 'close', this.path);
  }
}

function applies(fault: Fault, op: StorageOp): boolean {
  if (fault === 'short-write') return op === 'pwrite';
  if (fault === 'fsync-lost') return op === 'sync' || op === 'datasync' || op === 'syncDir';
  return true;
}

function injected(fault: Fault, doing: string, path: string): Error {
  const errno = fault === 'ENOSPC' ? 'ENOSPC' : 'EIO';
  const err = Object.assign(new Error(`${errno}: injected fault (${fault}), ${doing} '${path}'`), { code: errno });
  return fromFsError(err, doing, path);
}
