/**
 * Errors reach NBD clients as the NBD error that says what happened: a full
 * disk as NBD_ENOSPC (so QEMU's werror=enospc pauses the VM instead of
 * failing it), a read-only one as NBD_EPERM, anything unknown as NBD_EIO.
 * One function maps every error (nbdErrorOf); in process, over a unix socket.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LifeboatError, fromFsError } from '../src/core/errors.js';
import { nbdErrorOf } from '../src/nbd/nbd-errors.js';
import * as W from '../src/nbd/wire.js';
import { memoryDevice, withServer } from './nbd-devices.js';
import { NbdPeer } from './nbd-peer.js';

const MiB = 1 << 20;

function errno(code: string, syscall = 'write'): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: failed, ${syscall}`), { code, syscall });
}

test('nbdErrorOf: coded errors by code and category, errno errors by errno, wrapped ones by their cause', () => {
  const cases: [unknown, number][] = [
    [new LifeboatError('LFB_ERR_NO_SPACE', 'overlay full'), W.NBD_ENOSPC],
    [fromFsError(errno('ENOSPC'), 'write overlay', '/x'), W.NBD_ENOSPC],
    [fromFsError(errno('EDQUOT'), 'write overlay', '/x'), W.NBD_ENOSPC],
    [errno('ENOSPC'), W.NBD_ENOSPC],
    [errno('EDQUOT'), W.NBD_ENOSPC],
    [errno('EFBIG'), W.NBD_ENOSPC],
    [errno('EROFS'), W.NBD_EPERM],
    [errno('EPERM'), W.NBD_EPERM],
    [errno('EACCES'), W.NBD_EPERM],
    [fromFsError(errno('EROFS'), 'write overlay', '/x'), W.NBD_EPERM],
    [errno('EINVAL'), W.NBD_EINVAL],
    [errno('ENOMEM'), W.NBD_ENOMEM],
    [errno('EIO'), W.NBD_EIO],
    [errno('ESHUTDOWN'), W.NBD_ESHUTDOWN],
    // We advertise neither fast zero nor DF, so the errors those would carry are EINVAL.
    [errno('ENOTSUP'), W.NBD_EINVAL],
    [errno('EOPNOTSUPP'), W.NBD_EINVAL],
    [errno('EOVERFLOW'), W.NBD_EINVAL],
    [new LifeboatError('LFB_ERR_INVALID_ARGUMENT', 'range outside the disk'), W.NBD_EINVAL],
    [new LifeboatError('LFB_ERR_IO', 'pwrite failed', { cause: errno('ENOSPC') }), W.NBD_ENOSPC],
    [new LifeboatError('LFB_ERR_INTERNAL', 'overlay is closed'), W.NBD_EIO],
    [new LifeboatError('LFB_ERR_BLOCK_CORRUPT', 'bad block'), W.NBD_EIO],
    [new LifeboatError('LFB_ERR_IO', 'read failed', { details: { errno: 'EIO' } }), W.NBD_EIO],
    [errno('ENOENT'), W.NBD_EIO],
    [new Error('something else'), W.NBD_EIO],
    ['a string', W.NBD_EIO],
    [undefined, W.NBD_EIO],
  ];
  for (const [err, want] of cases) {
    const label = err instanceof Error ? `${err.constructor.name} ${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}` : String(err);
    assert.equal(nbdErrorOf(err), want, label);
  }
  // A cause chain that loops is followed a bounded number of steps.
  const a = new Error('a') as Error & { cause?: unknown };
  const b = new Error('b', { cause: a });
  a.cause = b;
  assert.equal(nbdErrorOf(a), W.NBD_EIO);
});

test(
  'nbd: a WRITE the device rejects for lack of space is answered NBD_ENOSPC, coded or raw errno; other failures as mapped',
  { timeout: 30_000 },
  async () => {
    const failures: Record<number, unknown> = {
      0: new LifeboatError('LFB_ERR_NO_SPACE', 'overlay: no space left on device'),
      4096: errno('ENOSPC'),
      8192: errno('EROFS'),
      12288: new LifeboatError('LFB_ERR_IO', 'overlay write', { cause: errno('EDQUOT') }),
      16384: new Error('disk on fire'),
    };
    const dev = memoryDevice(MiB, {
      write: async (offset) => {
        if (offset in failures) throw failures[offset];
      },
    });
    await withServer({ d: dev }, {}, async (path, _server, logger) => {
      for (const structured of [false, true]) {
        const peer = await NbdPeer.connect(path);
        try {
          await peer.open('d', { structured });
          const want: [number, number][] = [
            [0, W.NBD_ENOSPC],
            [4096, W.NBD_ENOSPC],
            [8192, W.NBD_EPERM],
            [12288, W.NBD_ENOSPC],
            [16384, W.NBD_EIO],
            [20480, 0],
          ];
          for (const [offset] of want)
            peer.sendRequest({ type: W.NBD_CMD_WRITE, cookie: BigInt(offset), offset, length: 4096, payload: Buffer.alloc(4096, 1) });
          const got = new Map<bigint, number>();
          for (let i = 0; i < want.length; i++) {
            const r = await peer.readSimpleReply();
            got.set(r.cookie, r.error);
          }
          for (const [offset, code] of want) assert.equal(got.get(BigInt(offset)), code, `WRITE at ${offset} (structured ${structured})`);
          // A WRITE past the end of the disk is ENOSPC too (the protocol says so), a READ past it EINVAL.
          peer.sendRequest({ type: W.NBD_CMD_WRITE, cookie: 1n, offset: MiB - 512, length: 1024, payload: Buffer.alloc(1024) });
          assert.equal((await peer.readSimpleReply()).error, W.NBD_ENOSPC);
          peer.sendRequest({ type: W.NBD_CMD_WRITE_ZEROES, cookie: 2n, offset: MiB, length: 4096 });
          assert.equal((await peer.readSimpleReply()).error, W.NBD_ENOSPC);
          peer.sendRequest({ type: W.NBD_CMD_READ, cookie: 3n, offset: MiB - 512, length: 1024 });
          if (structured) {
            const c = await peer.readChunk();
            assert.equal(c.type, W.NBD_REPLY_TYPE_ERROR);
            assert.equal(c.payload.readUInt32BE(0), W.NBD_EINVAL);
          } else assert.equal((await peer.readSimpleReply()).error, W.NBD_EINVAL);
        } finally {
          peer.destroy();
        }
      }
      // Only the unknown failure is logged as an error: a full disk is the client's to handle.
      const errors = logger.lines.filter((l) => l.startsWith('error'));
      assert.equal(errors.length, 2, errors.join('\n'));
      assert.ok(errors.every((l) => l.includes('disk on fire')));
    });
  },
);

test('nbd: a READ failure in structured mode is an error chunk carrying the mapped error', { timeout: 30_000 }, async () => {
  const dev = memoryDevice(MiB, {
    read: async (offset) => {
      if (offset === 0) throw errno('EIO', 'read');
      if (offset === 4096) throw errno('ENOMEM', 'read');
    },
  });
  await withServer({ d: dev }, {}, async (path) => {
    const peer = await NbdPeer.connect(path);
    try {
      await peer.open('d', { structured: true });
      for (const [offset, code] of [
        [0, W.NBD_EIO],
        [4096, W.NBD_ENOMEM],
      ] as const) {
        peer.sendRequest({ type: W.NBD_CMD_READ, cookie: BigInt(offset), offset, length: 4096 });
        const c = await peer.readChunk();
        assert.equal(c.type, W.NBD_REPLY_TYPE_ERROR);
        assert.equal(c.flags & W.NBD_REPLY_FLAG_DONE, W.NBD_REPLY_FLAG_DONE);
        assert.equal(c.payload.readUInt32BE(0), code);
      }
    } finally {
      peer.destroy();
    }
  });
});
