// The lab's sessions through the server's control API (src/app/lab-sessions.ts), against a server that accepts
// connections and never answers (a hung or stopped `serve`): each call fails at its deadline instead of holding a
// SureBackup run, and its teardown, for ever. In process, no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './helpers.js';
import { controlApiLabSessions } from '../src/app/lab-sessions.js';
import { controlFile } from '../src/app/control-api.js';
import { isLifeboatError } from '../src/core/errors.js';

test('a server that never answers: start, stop and list fail at their deadline with LFB_ERR_SERVER_NO_ANSWER', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir('lifeboat-lab-sessions-');
  const held = new Set<Socket>();
  const silent = createServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
    s.resume();
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  try {
    const port = (silent.address() as { port: number }).port;
    await mkdir(join(dir, 'instant'), { recursive: true });
    await writeFile(controlFile(dir), JSON.stringify({ pid: process.pid, port, token: 't', nfsPort: 0 }));
    const sessions = controlApiLabSessions(dir, { deadlineMs: 300 });
    const calls: [string, () => Promise<unknown>][] = [
      ['start', () => sessions.start({ job: 'web', point: 'latest', name: 'sb-abc123-0', network: 'tap,ifname=x' })],
      ['stop', () => sessions.stop('sb-abc123-0')],
      ['list', () => sessions.list()],
    ];
    for (const [what, call] of calls) {
      const started = performance.now();
      await assert.rejects(
        call(),
        (e: unknown) =>
          isLifeboatError(e, 'LFB_ERR_SERVER_NO_ANSWER') && /did not answer (POST|DELETE|GET) \/sessions\S* within 0\.3 s/.test((e as Error).message),
        what,
      );
      assert.ok(performance.now() - started < 3_000, `${what} waited ${Math.round(performance.now() - started)} ms`);
    }
  } finally {
    for (const s of held) s.destroy();
    await new Promise((r) => silent.close(r));
    await cleanup();
  }
});
