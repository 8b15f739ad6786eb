/**
 * Replies made in one turn of the event loop leave in one system call. The
 * servers' sockets are watched through net.Socket's _write/_writev (one call
 * each is one uv_write): requests are held by a gate, then let go together,
 * so all their replies are made in one turn. Replying one writev at a time
 * made the NBD server's 4 KiB random reads cost about twice what they do now.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { batchWritesThisTurn } from '../src/core/batched-writes.js';
import * as W from '../src/nbd/wire.js';
import { RpcTestClient } from '../src/testing/rpc-client.js';
import { patternDevice, withServer } from './nbd-devices.js';
import { NbdPeer } from './nbd-peer.js';
import { GATED_PROG, gatedProgram, replyStatus, withRpcServer } from './rpc-helpers.js';

const CALLS = 16;

/** Counts the writes (one per uv_write) that sockets other than `client` make while it runs. */
async function serverWrites(client: () => Socket | undefined, fn: () => Promise<void>): Promise<number> {
  const proto = Socket.prototype as unknown as Record<'_write' | '_writev', (...a: unknown[]) => unknown>;
  const original = { _write: proto._write, _writev: proto._writev };
  let calls = 0;
  for (const name of ['_write', '_writev'] as const) {
    proto[name] = function (this: Socket, ...a: unknown[]) {
      if (this !== client()) calls += 1;
      return original[name].apply(this, a);
    };
  }
  try {
    await fn();
  } finally {
    Object.assign(proto, original);
  }
  return calls;
}

/** A gate opened once: every call waiting on it resumes in the same microtask drain. */
function gate(): { wait: () => Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { wait: () => opened, open };
}

test('nbd: the replies of reads that finish together leave in one writev, each with its own bytes', async () => {
  const g = gate();
  const block = 4096;
  await withServer({ d: patternDevice(1 << 20, block, g.wait) }, {}, async (path) => {
    const peer = await NbdPeer.connect(path);
    try {
      await peer.open('d');
      for (let i = 0; i < CALLS; i++) peer.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(i), offset: i * block, length: block });
      const writes = await serverWrites(
        () => peer.socket,
        async () => {
          await sleep(50); // every request is read and waits at the gate
          g.open();
          const seen = new Set<bigint>();
          for (let i = 0; i < CALLS; i++) {
            const r = await peer.readSimpleReply(() => block);
            assert.equal(r.error, 0);
            assert.ok(
              r.data.every((b) => b === Number(r.cookie)),
              `the bytes of block ${r.cookie}`,
            );
            seen.add(r.cookie);
          }
          assert.equal(seen.size, CALLS);
        },
      );
      assert.equal(writes, 1, `${CALLS} replies in ${writes} writes`);
    } finally {
      peer.destroy();
    }
  });
});

test('rpc: the replies of calls that finish together leave in one writev', async () => {
  const gated = gatedProgram();
  await withRpcServer(
    { maxInFlight: CALLS },
    async (port) => {
      const c = await RpcTestClient.connect(port);
      try {
        const replies = Array.from({ length: CALLS }, () => c.call(GATED_PROG, 1, 1));
        const writes = await serverWrites(
          () => c.socket,
          async () => {
            while (gated.running() < CALLS) await sleep(5);
            gated.open();
            for (const r of await Promise.all(replies)) assert.equal(replyStatus(r), 0);
          },
        );
        assert.equal(writes, 1, `${CALLS} replies in ${writes} writes`);
      } finally {
        gated.open();
        c.close();
      }
    },
    gated.program,
  );
});

test('batchWritesThisTurn: writes from separate ticks of one turn go out together, a later turn gets its own writev', async () => {
  const batches: number[] = [];
  const stream = new Writable({
    write: (_chunk, _enc, cb) => (batches.push(1), cb()),
    writev: (chunks, cb) => (batches.push(chunks.length), cb()),
  });
  for (let i = 0; i < 3; i++) {
    await Promise.resolve();
    batchWritesThisTurn(stream);
    stream.write(Buffer.from([i]));
  }
  await new Promise((r) => setImmediate(r));
  batchWritesThisTurn(stream);
  stream.write(Buffer.from([3]));
  stream.write(Buffer.from([4]));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(batches, [3, 2]);
});
