/**
 * The NBD server's TCP listener (ephemeral ports on 127.0.0.1): the allow
 * list is checked at accept, before the greeting; connections have TCP
 * keepalive, so a client whose host vanished is found out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { NbdServer, type NbdServerOptions } from '../src/nbd/nbd-server.js';
import { capturingLogger, memoryDevice } from './nbd-devices.js';
import { NbdPeer } from './nbd-peer.js';

const run = promisify(execFile);
const MiB = 1 << 20;

async function withTcpServer(opts: Partial<NbdServerOptions>, fn: (port: number) => Promise<void>): Promise<void> {
  const dev = memoryDevice(MiB);
  const server = new NbdServer({
    exports: { list: () => [{ name: 'd', description: '' }], open: (n) => (n === 'd' ? dev : undefined) },
    logger: capturingLogger(),
    ...opts,
  });
  try {
    await fn(await server.listen(0, '127.0.0.1'));
  } finally {
    await server.close();
  }
}

test('nbd: a peer the allow list refuses is disconnected at accept, before the greeting', { timeout: 30_000 }, async () => {
  const asked: string[] = [];
  await withTcpServer(
    {
      accept: (a) => {
        asked.push(a);
        return false;
      },
    },
    async (port) => {
      const p = await NbdPeer.connect(port);
      try {
        await Promise.race([p.closed, sleep(5000).then(() => assert.fail('the refused connection stays open'))]);
        assert.equal(p.received, 0, 'not one byte of greeting');
        assert.deepEqual(
          asked.map((a) => a.replace(/^::ffff:/, '')),
          ['127.0.0.1'],
        );
      } finally {
        p.destroy();
      }
    },
  );
  // The same server admits an allowed peer.
  await withTcpServer({ accept: (a) => a.replace(/^::ffff:/, '') === '127.0.0.1' }, async (port) => {
    const p = await NbdPeer.connect(port);
    try {
      assert.equal((await p.open('d')).size, MiB);
    } finally {
      p.destroy();
    }
  });
});

test('nbd: connections have TCP keepalive (keepAliveMs, 60 s by default)', { timeout: 30_000 }, async () => {
  await withTcpServer({}, async (port) => {
    const p = await NbdPeer.connect(port);
    try {
      await p.open('d');
      // ss shows a keepalive timer on a socket with SO_KEEPALIVE set: timer:(keepalive,59sec,0)
      const { stdout } = await run('ss', ['-tnoH', 'state', 'established', `( sport = :${port} )`]);
      assert.match(stdout, /timer:\(keepalive,/, stdout);
      const seconds = Number(/timer:\(keepalive,(\d+)(?:min|sec)/.exec(stdout)?.[1]);
      assert.ok(stdout.includes('min') ? seconds === 1 : seconds > 30 && seconds <= 60, stdout);
    } finally {
      p.destroy();
    }
  });
});
