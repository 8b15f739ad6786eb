/**
 * Real NBD clients (qemu-io, nbdcopy, nbdinfo from QEMU and libnbd) against
 * the server over a unix socket: no TCP port, no root; needs the QEMU and
 * libnbd tools. A full disk reaches QEMU as ENOSPC, which is what lets
 * werror=enospc pause a VM instead of failing its I/O.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LifeboatError } from '../src/core/errors.js';
import { memoryDevice, nbdTempDir, withServer } from './nbd-devices.js';

const run = promisify(execFile);
const MiB = 1 << 20;

function uri(path: string, name: string): string {
  return `nbd+unix:///${name}?socket=${path}`;
}

/** qemu-io's output; it exits 1 when a command failed, which some tests expect. */
async function qemuIo(target: string, commands: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), target]);
    return stdout + stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: unknown };
    if (e.code !== 1) throw err;
    return (e.stdout ?? '') + (e.stderr ?? '');
  }
}

test('nbd: qemu-io is told "No space left on device" when the overlay is full, coded or raw ENOSPC', { timeout: 60_000 }, async () => {
  const full = MiB / 2;
  const coded = memoryDevice(MiB, {
    write: async (offset) => {
      if (offset >= full) throw new LifeboatError('LFB_ERR_NO_SPACE', 'overlay: no space left on device');
    },
  });
  const raw = memoryDevice(MiB, {
    write: async (offset) => {
      if (offset >= full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    },
  });
  await withServer({ coded, raw }, {}, async (path) => {
    for (const name of ['coded', 'raw']) {
      const out = await qemuIo(uri(path, name), ['write -P 0x11 0 4096', `write -P 0x22 ${full} 4096`, 'read -P 0x11 0 4096']);
      assert.match(out, /wrote 4096\/4096 bytes at offset 0\b/, out);
      assert.match(out, /write failed: No space left on device/, out);
      assert.match(out, /read 4096\/4096 bytes at offset 0\b/, out);
    }
  });
});

test('nbd: nbdcopy and qemu-img copy a disk in and out whole through the limits; nbdinfo lists and maps it', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await nbdTempDir();
  try {
    const size = 64 * MiB;
    const source = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) source.writeUInt32LE((i * 2654435761) >>> 0, i);
    await writeFile(join(dir, 'in.raw'), source);
    const dev = memoryDevice(size);
    // Small limits, so requests wait for room all the time.
    await withServer({ d: dev }, { maxInFlight: 4, maxInFlightBytes: 2 * MiB, maxInFlightBytesTotal: 4 * MiB }, async (path) => {
      await run('nbdcopy', ['--requests=64', join(dir, 'in.raw'), uri(path, 'd')]);
      assert.ok(dev.bytes.equals(source), 'nbdcopy wrote the disk');
      await run('nbdcopy', ['--connections=4', '--request-size=33554432', uri(path, 'd'), join(dir, 'out.raw')]);
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(path, 'd'), join(dir, 'conv.raw')]);
      const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
      assert.equal(digest(await readFile(join(dir, 'out.raw'))), digest(source));
      assert.equal(digest(await readFile(join(dir, 'conv.raw'))), digest(source));
      const list = (await run('nbdinfo', ['--list', `nbd+unix://?socket=${path}`])).stdout;
      assert.match(list, /export="d"/);
      const map = (await run('nbdinfo', ['--map', uri(path, 'd')])).stdout;
      assert.match(map, /^\s*0\s+67108864\s+0\s+data/m, map);
    });
  } finally {
    await cleanup();
  }
});
