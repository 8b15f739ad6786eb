/** NbdDevices and a server harness for the NBD tests. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../src/core/log.js';
import type { NbdDevice } from '../src/nbd/export.js';
import { NbdServer, type NbdServerOptions } from '../src/nbd/nbd-server.js';

export interface CountingDevice extends NbdDevice {
  /** Calls of read and write that have started. */
  reads: number;
  writes: number;
  /** Calls in progress now, and the most there ever were. */
  active: number;
  peakActive: number;
}

/**
 * A device of any size that stores nothing: every byte of block b (blocks of
 * `block` bytes) reads as b & 0xff, and a write must carry that byte first and
 * last. Calls wait for `gate` when one is given.
 */
export function patternDevice(size: number, block: number, gate?: () => Promise<void>): CountingDevice {
  const dev: CountingDevice = {
    size,
    reads: 0,
    writes: 0,
    active: 0,
    peakActive: 0,
    async read(offset, length) {
      dev.reads += 1;
      dev.active += 1;
      dev.peakActive = Math.max(dev.peakActive, dev.active);
      try {
        await gate?.();
        // allocUnsafe + fill touches every page, so the bytes count in RSS as real data would.
        return Buffer.allocUnsafe(length).fill(Math.floor(offset / block) & 0xff);
      } finally {
        dev.active -= 1;
      }
    },
    async write(offset, data) {
      dev.writes += 1;
      dev.active += 1;
      dev.peakActive = Math.max(dev.peakActive, dev.active);
      try {
        await gate?.();
        const want = Math.floor(offset / block) & 0xff;
        if (data[0] !== want || data[data.length - 1] !== want) throw new Error(`write at ${offset}: wrong bytes`);
      } finally {
        dev.active -= 1;
      }
    },
    flush: async () => undefined,
    extents: (_offset, length) => [{ length, hole: false }],
  };
  return dev;
}

/** A device in memory, with hooks to fail or delay chosen calls. */
export function memoryDevice(
  size: number,
  hooks: { write?: (offset: number, data: Buffer) => Promise<void>; flush?: () => Promise<void>; read?: (offset: number) => Promise<void> } = {},
): NbdDevice & { readonly bytes: Buffer; flushes: number } {
  const bytes = Buffer.alloc(size);
  const dev = {
    size,
    bytes,
    flushes: 0,
    async read(offset: number, length: number) {
      await hooks.read?.(offset);
      return Buffer.from(bytes.subarray(offset, offset + length));
    },
    async write(offset: number, data: Buffer) {
      await hooks.write?.(offset, data);
      data.copy(bytes, offset);
    },
    async flush() {
      await hooks.flush?.();
      dev.flushes += 1;
    },
    extents: (_offset: number, length: number) => [{ length, hole: false }],
  };
  return dev;
}

export interface CapturingLogger extends Logger {
  readonly lines: string[];
}

export function capturingLogger(): CapturingLogger {
  const lines: string[] = [];
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    void lines.push(`${level} ${msg}${fields ? ' ' + JSON.stringify(fields) : ''}`);
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

/**
 * A temporary folder. Like tempDir() in helpers.ts, without loading the whole
 * application: the NBD tests depend on src/nbd and src/core only.
 */
export async function nbdTempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'lifeboat-nbd-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** An NbdServer on a unix socket in a temporary folder, closed whatever happens. */
export async function withServer(
  devices: Record<string, NbdDevice>,
  opts: Partial<NbdServerOptions>,
  fn: (path: string, server: NbdServer, logger: CapturingLogger) => Promise<void>,
): Promise<void> {
  const { dir, cleanup } = await nbdTempDir();
  const logger = capturingLogger();
  const server = new NbdServer({
    exports: { list: () => Object.keys(devices).map((name) => ({ name, description: `device ${name}` })), open: (n) => devices[n] },
    logger,
    ...opts,
  });
  try {
    const path = join(dir, 'nbd.sock');
    await server.listenUnix(path);
    await fn(path, server, logger);
  } finally {
    await server.close();
    await cleanup();
  }
}
