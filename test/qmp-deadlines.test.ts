import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { QmpClient } from '../src/qemu/qmp.js';
import { isLifeboatError } from '../src/core/errors.js';
import { tempDir } from './helpers.js';

/** A monitor on a unix socket that behaves as `onClient` says, and is closed in every outcome. */
async function withMonitor(onClient: (s: Socket) => void, f: (path: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir();
  const path = join(dir, 'qmp.sock');
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    onClient(s);
  });
  await new Promise<void>((r) => server.listen(path, r));
  try {
    await f(path);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    await cleanup();
  }
}

const GREETING = '{"QMP": {"version": {}, "capabilities": []}}\n';
const answerCapabilities = (s: Socket, then: (cmd: { execute: string; id: string }) => void): void => {
  let buf = '';
  s.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; id: string };
      buf = buf.slice(nl + 1);
      if (cmd.execute === 'qmp_capabilities') s.write(`${JSON.stringify({ return: {}, id: cmd.id })}\n`);
      else then(cmd);
    }
  });
};

// Before these deadlines a monitor that accepted and never spoke held a backup run (and CI) forever.
test('qmp: a monitor that accepts the connection and never greets fails connect with LFB_ERR_VM at its deadline', async () => {
  await withMonitor(
    () => undefined,
    async (path) => {
      const t0 = performance.now();
      await assert.rejects(QmpClient.connect(path, 300), (e) => isLifeboatError(e, 'LFB_ERR_VM') && /no greeting within 300 ms/.test(e.message));
      assert.ok(performance.now() - t0 < 2000);
    },
  );
});

test('qmp: a monitor that closes before its greeting fails connect at once', async () => {
  await withMonitor(
    (s) => s.end(),
    async (path) => {
      await assert.rejects(QmpClient.connect(path, 10_000), (e) => isLifeboatError(e, 'LFB_ERR_VM') && /closed/.test(e.message));
    },
  );
});

test('qmp: a command with no answer fails at its deadline; the connection still serves later commands', async () => {
  await withMonitor(
    (s) => {
      s.write(GREETING);
      answerCapabilities(s, (cmd) => {
        if (cmd.execute === 'query-status') s.write(`${JSON.stringify({ return: { status: 'running' }, id: cmd.id })}\n`);
        // 'block-export-del' is never answered
      });
    },
    async (path) => {
      const qmp = await QmpClient.connect(path, 2000);
      try {
        await assert.rejects(
          qmp.execute('block-export-del', { id: 'x' }, 200),
          (e) => isLifeboatError(e, 'LFB_ERR_VM') && /did not answer block-export-del within 200 ms/.test(e.message),
        );
        assert.deepEqual(await qmp.execute('query-status'), { status: 'running' });
      } finally {
        qmp.close();
      }
    },
  );
});
