/**
 * FLUSH and FUA keep their meaning through the backpressure machinery: a
 * FLUSH is answered only after dev.flush() has finished, and that call starts
 * after every WRITE answered before the FLUSH arrived has been written to the
 * device; a FUA WRITE is answered only after its own flush. In process, over
 * a unix socket: no TCP port, no root, no QEMU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import * as W from '../src/nbd/wire.js';
import { memoryDevice, withServer } from './nbd-devices.js';
import { NbdPeer } from './nbd-peer.js';

const MiB = 1 << 20;

test(
  'nbd: FLUSH is answered after dev.flush() finishes, which starts after every WRITE answered before it; FUA WRITEs flush first',
  { timeout: 30_000 },
  async () => {
    const events: string[] = [];
    const writeDelay = new Map<number, number>([
      [0, 50],
      [4096, 400],
    ]);
    const dev = memoryDevice(MiB, {
      write: async (offset) => {
        events.push(`write ${offset} start`);
        await sleep(writeDelay.get(offset) ?? 0);
        events.push(`write ${offset} done`);
      },
      flush: async () => {
        events.push('flush start');
        await sleep(200);
        events.push('flush done');
      },
    });
    // Small limits, so the FLUSH arrives while the connection is at its byte limit.
    await withServer({ d: dev }, { maxInFlightBytes: 4096 }, async (path) => {
      const p = await NbdPeer.connect(path);
      try {
        await p.open('d');
        p.sendRequest({ type: W.NBD_CMD_WRITE, cookie: 1n, offset: 0, length: 4096, payload: Buffer.alloc(4096, 1) });
        assert.equal((await p.readSimpleReply()).cookie, 1n);
        events.push('reply write 0');
        // A slow WRITE in flight, then the FLUSH.
        p.sendRequest({ type: W.NBD_CMD_WRITE, cookie: 2n, offset: 4096, length: 4096, payload: Buffer.alloc(4096, 2) });
        p.sendRequest({ type: W.NBD_CMD_FLUSH, cookie: 3n, offset: 0, length: 0 });
        const got = new Set<bigint>();
        for (let i = 0; i < 2; i++) {
          const r = await p.readSimpleReply();
          assert.equal(r.error, 0);
          got.add(r.cookie);
          events.push(`reply ${r.cookie === 3n ? 'flush' : 'write 4096'}`);
        }
        assert.deepEqual([...got].sort(), [2n, 3n]);
        const at = (e: string): number => {
          const i = events.indexOf(e);
          assert.ok(i >= 0, `${e} in ${events.join(', ')}`);
          return i;
        };
        assert.ok(at('write 0 done') < at('reply write 0'));
        assert.ok(at('reply write 0') < at('flush start'), 'the flush covers the WRITE answered before it');
        assert.ok(at('flush done') < at('reply flush'), 'FLUSH answered only once the flush is done');

        events.length = 0;
        p.sendRequest({ type: W.NBD_CMD_WRITE, cookie: 4n, offset: 8192, length: 4096, flags: W.NBD_CMD_FLAG_FUA, payload: Buffer.alloc(4096, 4) });
        assert.equal((await p.readSimpleReply()).error, 0);
        events.push('reply fua');
        assert.deepEqual(events, ['write 8192 start', 'write 8192 done', 'flush start', 'flush done', 'reply fua']);
        assert.equal(dev.bytes[8192], 4);
      } finally {
        p.destroy();
      }
    });
  },
);
