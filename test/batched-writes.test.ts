/**
 * Replies made while handling one event leave in one system call. The
 * NBD server's socket is watched through net.Socket's _write/_writev (one
 * call each is one uv_write): reads are held by a gate, then let go together,
 * so all their replies are made in one tick. Replying one writev at a time
 * held the server's warm 4 KiB random reads to about 60% of what they reach now.
 * (The RPC server's side is in rpc-hardening.test.ts: it listens on a port.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { batchWritesThisTick } from '../src/core/batched-writes.js';
import * as W from '../src/nbd/wire.js';
import { patternDevice, withServer } from './nbd-devices.js';
import { NbdPeer } from './nbd-peer.js';
import { serverWrites, waitUntil } from './socket-writes.js';

const CALLS = 16;

/** A gate opened once: every call waiting on it resumes in the same microtask drain. */
function gate(): { wait: () => Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { wait: () => opened, open };
}

test('nbd: the replies of reads that finish together leave in one writev, each with its own bytes', async () => {
  const g = gate();
  const block = 4096;
  const device = patternDevice(1 << 20, block, g.wait);
  await withServer({ d: device }, {}, async (path) => {
    const peer = await NbdPeer.connect(path);
    try {
      await peer.open('d');
      for (let i = 0; i < CALLS; i++) peer.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(i), offset: i * block, length: block });
      const writes = await serverWrites(
        (s) => s !== peer.socket,
        async () => {
          await waitUntil(`${CALLS} reads at the gate`, () => device.active === CALLS);
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

test('batchWritesThisTick: writes from the promise continuations of one tick go out together, a later tick gets its own writev', async () => {
  const batches: number[] = [];
  const stream = new Writable({
    write: (_chunk, _enc, cb) => (batches.push(1), cb()),
    writev: (chunks, cb) => (batches.push(chunks.length), cb()),
  });
  let ready!: () => void;
  const opened = new Promise<void>((r) => (ready = r));
  const writers = [0, 1, 2].map(async (i) => {
    await opened;
    for (let k = 0; k < i; k++) await Promise.resolve();
    batchWritesThisTick(stream);
    stream.write(Buffer.from([i]));
  });
  ready();
  await Promise.all(writers);
  await new Promise((r) => setImmediate(r));
  batchWritesThisTick(stream);
  stream.write(Buffer.from([3]));
  stream.write(Buffer.from([4]));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(batches, [3, 2]);
});

test('batchWritesThisTick: the batch leaves before the next event of the turn is handled, not at its end', async () => {
  const seen: string[] = [];
  const stream = new Writable({
    write: (_chunk, _enc, cb) => (seen.push('write'), cb()),
    writev: (_chunks, cb) => (seen.push('write'), cb()),
  });
  await new Promise<void>((resolve) => {
    setImmediate(() => (seen.push('next event'), resolve()));
    batchWritesThisTick(stream);
    stream.write(Buffer.from([1]));
  });
  assert.deepEqual(seen, ['write', 'next event']);
});

test('batchWritesThisTick: a write made straight in a callback and those of its promise continuations leave together', async () => {
  const batches: number[] = [];
  const stream = new Writable({
    write: (_chunk, _enc, cb) => (batches.push(1), cb()),
    writev: (chunks, cb) => (batches.push(chunks.length), cb()),
  });
  const write = (b: number): void => {
    batchWritesThisTick(stream);
    stream.write(Buffer.from([b]));
  };
  await new Promise<void>((resolve) =>
    setImmediate(() => {
      write(0);
      void Promise.resolve()
        .then(() => write(1))
        .then(() => write(2));
      setImmediate(resolve);
    }),
  );
  assert.deepEqual(batches, [3]);
});
