import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestFs } from '../src/files/guest-fs.js';
import type { Guestfish, RemoteResult } from '../src/files/guestfish.js';
import { isLifeboatError } from '../src/core/errors.js';

/**
 * A stand-in for the appliance's guestfish: `download SRC FIFO` copies a host
 * file into the pipe as guestfish does (its open of the pipe waits for a
 * reader). No appliance is booted here.
 */
function fakeGuestfish(): { gf: Guestfish; running: () => number } {
  let running = 0;
  const gf = {
    queued(_cmd: string, args: readonly string[], o: { signal?: AbortSignal; onStart?: () => void }): Promise<RemoteResult> {
      if (o.signal?.aborted === true) return Promise.resolve({ ok: false, stdout: '', stderr: 'cancelled before it started' });
      o.onStart?.();
      running += 1;
      return new Promise((resolve) => {
        const p = spawn('sh', ['-c', 'cat -- "$1" > "$2"', 'sh', args[0]!, args[1]!], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        p.on('close', (code) => {
          running -= 1;
          resolve({ ok: code === 0, stdout: '', stderr });
        });
      });
    },
  } as unknown as Guestfish;
  return { gf, running: () => running };
}

test(
  'guest file streams: the bytes arrive whole; a reader of the pipe that dies at once fails the download in moments, and the command writing to the pipe is stopped',
  { timeout: 30_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lfb-gfs-'));
    const path = process.env['PATH'];
    try {
      const src = join(dir, 'file.bin');
      const bytes = Buffer.alloc(3 * 1024 * 1024 + 17, 0x6c);
      await writeFile(src, bytes);
      const { gf, running } = fakeGuestfish();
      const fs = new GuestFs(gf, dir);
      const ok = await fs.streamOut('download', (fifo) => [src, fifo], '/file.bin');
      const chunks: Buffer[] = [];
      for await (const c of ok.stream) chunks.push(c as Buffer);
      await ok.done;
      assert.ok(Buffer.concat(chunks).equals(bytes));

      // A dd that exits before it opens the pipe (it could not start, or failed): nobody will ever read the pipe.
      await writeFile(join(dir, 'dd'), '#!/bin/sh\necho "dd: cannot start" >&2\nexit 1\n');
      await chmod(join(dir, 'dd'), 0o755);
      process.env['PATH'] = `${dir}:${path ?? ''}`;
      const t0 = performance.now();
      const bad = await fs.streamOut('download', (fifo) => [src, fifo], '/file.bin');
      process.env['PATH'] = path;
      bad.stream.on('error', () => undefined).resume();
      await assert.rejects(bad.done, (e: unknown) => isLifeboatError(e, 'LFB_ERR_TOOL_FAILED') && /dd: cannot start/.test((e as Error).message));
      assert.ok(performance.now() - t0 < 10_000, `failed after ${(performance.now() - t0).toFixed(0)} ms`);
      assert.equal(running(), 0, 'the command writing to the pipe was stopped');
    } finally {
      process.env['PATH'] = path;
      await rm(dir, { recursive: true, force: true });
    }
  },
);
