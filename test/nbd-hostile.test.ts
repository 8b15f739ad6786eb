/**
 * The NBD server against peers that break the protocol on purpose: bad
 * lengths, meta-context tricks, offsets near 2^64, unknown flags and
 * commands, oversized payloads, throwing collaborators. Each bad request gets
 * the answer the protocol asks for (or closes that connection only), and
 * nothing escapes to the process. In process, over unix sockets: no TCP port,
 * no root, no QEMU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NbdDevice } from '../src/nbd/export.js';
import * as W from '../src/nbd/wire.js';
import { memoryDevice, withServer } from './nbd-devices.js';
import { metaQuery, nameAndInfos, NbdPeer } from './nbd-peer.js';

const MiB = 1 << 20;

/** Fails the test if anything escapes to the process while `fn` runs. */
async function noEscapes(fn: () => Promise<void>): Promise<void> {
  const escaped: unknown[] = [];
  const onError = (e: unknown): void => void escaped.push(e);
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  try {
    await fn();
    await sleep(50);
  } finally {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
  }
  assert.deepEqual(escaped, []);
}

async function opened(path: string, name: string, opts: { structured?: boolean; allocation?: boolean } = {}): Promise<NbdPeer> {
  const p = await NbdPeer.connect(path);
  await p.open(name, opts);
  return p;
}

test('nbd hostile: option lengths, names and meta-context queries', { timeout: 30_000 }, async () => {
  await noEscapes(() =>
    withServer({ a: memoryDevice(MiB), b: memoryDevice(MiB) }, {}, async (path) => {
      const p = await NbdPeer.connect(path);
      try {
        await p.greet();
        // Malformed GO data: the name length points past the end.
        const bad = nameAndInfos('a', []);
        bad.writeUInt32BE(1000, 0);
        p.sendOption(W.NBD_OPT_GO, bad);
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ERR_INVALID);
        // A name longer than the protocol's 4096 bytes.
        p.sendOption(W.NBD_OPT_GO, nameAndInfos('x'.repeat(5000), []));
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ERR_INVALID);
        // SET_META_CONTEXT before structured replies.
        p.sendOption(W.NBD_OPT_SET_META_CONTEXT, metaQuery('a', [W.BASE_ALLOCATION]));
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ERR_INVALID);
        p.sendOption(W.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(1));
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ERR_INVALID, 'STRUCTURED_REPLY carries no data');
        p.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ACK);
        // A query count far beyond the data.
        const huge = metaQuery('a', []);
        huge.writeUInt32BE(0xffffffff, huge.length - 4);
        p.sendOption(W.NBD_OPT_SET_META_CONTEXT, huge);
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ERR_INVALID);
        // A query longer than 4096 bytes.
        p.sendOption(W.NBD_OPT_LIST_META_CONTEXT, metaQuery('a', ['base:' + 'y'.repeat(5000)]));
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ERR_INVALID);
        // An unknown export.
        p.sendOption(W.NBD_OPT_SET_META_CONTEXT, metaQuery('nope', [W.BASE_ALLOCATION]));
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ERR_UNKNOWN);
        // LIST with "base:" lists base:allocation; SET with "base:" selects nothing (the protocol says so).
        p.sendOption(W.NBD_OPT_LIST_META_CONTEXT, metaQuery('a', ['base:']));
        const listed = await p.readOptionReplies();
        assert.deepEqual(
          listed.filter((r) => r.type === W.NBD_REP_META_CONTEXT).map((r) => r.data.subarray(4).toString()),
          [W.BASE_ALLOCATION],
        );
        p.sendOption(W.NBD_OPT_SET_META_CONTEXT, metaQuery('a', ['base:', 'qemu:dirty-bitmap:x', 'nonsense']));
        assert.deepEqual(
          (await p.readOptionReplies()).map((r) => r.type),
          [W.NBD_REP_ACK],
        );
        // Duplicated queries select the context once.
        p.sendOption(
          W.NBD_OPT_SET_META_CONTEXT,
          metaQuery(
            'a',
            Array.from({ length: 1000 }, () => W.BASE_ALLOCATION),
          ),
        );
        assert.deepEqual(
          (await p.readOptionReplies()).map((r) => r.type),
          [W.NBD_REP_META_CONTEXT, W.NBD_REP_ACK],
        );
        // Unknown options are unsupported, and the connection goes on.
        p.sendOption(0x1234, Buffer.alloc(100));
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ERR_UNSUP);
        p.sendOption(W.NBD_OPT_GO, nameAndInfos('a', [W.NBD_INFO_BLOCK_SIZE, W.NBD_INFO_NAME, 0x7777]));
        const go = await p.readOptionReplies();
        assert.equal(go.at(-1)!.type, W.NBD_REP_ACK);
        // base:allocation was selected for this export: BLOCK_STATUS works.
        p.sendRequest({ type: W.NBD_CMD_BLOCK_STATUS, cookie: 1n, offset: 0, length: 65536 });
        assert.equal((await p.readChunk()).type, W.NBD_REPLY_TYPE_BLOCK_STATUS);
      } finally {
        p.destroy();
      }

      // An option longer than 64 KiB closes that connection; others are served.
      const big = await NbdPeer.connect(path);
      const other = await NbdPeer.connect(path);
      try {
        await big.greet();
        big.sendOption(W.NBD_OPT_GO, Buffer.alloc(0), 0x7fffffff);
        await big.closed;
        await other.open('b');
      } finally {
        big.destroy();
        other.destroy();
      }
    }),
  );
});

test('nbd hostile: meta contexts belong to the export they were set for, and a failed SET clears them', { timeout: 30_000 }, async () => {
  await noEscapes(() =>
    withServer({ a: memoryDevice(MiB), b: memoryDevice(MiB) }, {}, async (path) => {
      const status = async (p: NbdPeer): Promise<number> => {
        p.sendRequest({ type: W.NBD_CMD_BLOCK_STATUS, cookie: 9n, offset: 0, length: 4096 });
        const c = await p.readChunk();
        return c.type === W.NBD_REPLY_TYPE_BLOCK_STATUS ? 0 : c.type === -1 ? c.flags : c.payload.readUInt32BE(0);
      };
      const setThenGo = async (setFor: string, goTo: string, thenBadSet = false): Promise<NbdPeer> => {
        const p = await NbdPeer.connect(path);
        await p.greet();
        p.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
        await p.readOptionReplies();
        p.sendOption(W.NBD_OPT_SET_META_CONTEXT, metaQuery(setFor, [W.BASE_ALLOCATION]));
        assert.equal((await p.readOptionReplies())[0]!.type, W.NBD_REP_META_CONTEXT);
        if (thenBadSet) {
          p.sendOption(W.NBD_OPT_SET_META_CONTEXT, Buffer.alloc(3));
          assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ERR_INVALID);
        }
        p.sendOption(W.NBD_OPT_GO, nameAndInfos(goTo, []));
        assert.equal((await p.readOptionReplies()).at(-1)!.type, W.NBD_REP_ACK);
        return p;
      };
      const same = await setThenGo('a', 'a');
      const other = await setThenGo('a', 'b');
      const cleared = await setThenGo('a', 'a', true);
      try {
        assert.equal(await status(same), 0);
        assert.equal(await status(other), W.NBD_EINVAL, 'contexts set for export a do not apply to b');
        assert.equal(await status(cleared), W.NBD_EINVAL, 'a failed SET_META_CONTEXT clears the contexts');
      } finally {
        for (const p of [same, other, cleared]) p.destroy();
      }
    }),
  );
});

test('nbd hostile: offsets near 2^64, zero lengths, unknown commands and flags get EINVAL; the connection goes on', { timeout: 30_000 }, async () => {
  const dev = memoryDevice(MiB);
  dev.bytes.fill(0x33);
  await noEscapes(() =>
    withServer({ d: dev }, {}, async (path) => {
      for (const structured of [false, true]) {
        const p = await opened(path, 'd', { structured, allocation: structured });
        try {
          const answer = async (q: Parameters<NbdPeer['sendRequest']>[0], dataLength = 0): Promise<number> => {
            p.sendRequest(q);
            if (!structured) return (await p.readSimpleReply(() => dataLength)).error;
            const c = await p.readChunk();
            if (c.type === -1) return c.flags;
            if (c.type === W.NBD_REPLY_TYPE_ERROR) return c.payload.readUInt32BE(0);
            return 0;
          };
          const top = 2n ** 64n;
          assert.equal(await answer({ type: W.NBD_CMD_READ, cookie: 1n, offset: top - 4096n, length: 8192 }), W.NBD_EINVAL);
          assert.equal(await answer({ type: W.NBD_CMD_READ, cookie: 2n, offset: 2n ** 53n + 1n, length: 512 }), W.NBD_EINVAL);
          assert.equal(await answer({ type: W.NBD_CMD_READ, cookie: 3n, offset: top - 1n, length: 1 }), W.NBD_EINVAL);
          assert.equal(await answer({ type: W.NBD_CMD_WRITE, cookie: 4n, offset: top - 512n, length: 512, payload: Buffer.alloc(512) }), W.NBD_ENOSPC);
          assert.equal(await answer({ type: W.NBD_CMD_TRIM, cookie: 5n, offset: top - 512n, length: 4096 }), W.NBD_EINVAL);
          assert.equal(await answer({ type: W.NBD_CMD_WRITE_ZEROES, cookie: 6n, offset: top - 512n, length: 4096 }), W.NBD_ENOSPC);
          if (structured) assert.equal(await answer({ type: W.NBD_CMD_BLOCK_STATUS, cookie: 7n, offset: top - 512n, length: 4096 }), W.NBD_EINVAL);
          assert.equal(await answer({ type: W.NBD_CMD_READ, cookie: 8n, offset: 0, length: 0 }), W.NBD_EINVAL, 'zero-length READ');
          assert.equal(await answer({ type: W.NBD_CMD_READ, cookie: 9n, offset: 0, length: 4096, flags: 1 << 15 }), W.NBD_EINVAL, 'unknown flag');
          assert.equal(await answer({ type: W.NBD_CMD_READ, cookie: 10n, offset: 0, length: 4096, flags: 1 << 2 }), W.NBD_EINVAL, 'DF, not advertised');
          assert.equal(await answer({ type: W.NBD_CMD_READ, cookie: 11n, offset: 0, length: 4096, flags: 1 << 3 }), W.NBD_EINVAL, 'REQ_ONE on READ');
          assert.equal(
            await answer({ type: W.NBD_CMD_WRITE_ZEROES, cookie: 12n, offset: 0, length: 4096, flags: 1 << 4 }),
            W.NBD_EINVAL,
            'FAST_ZERO, not advertised',
          );
          assert.equal(
            await answer({ type: W.NBD_CMD_WRITE, cookie: 13n, offset: 0, length: 512, flags: 1 << 1, payload: Buffer.alloc(512) }),
            W.NBD_EINVAL,
            'NO_HOLE on WRITE',
          );
          assert.equal(await answer({ type: 42, cookie: 14n, offset: 0, length: 4096 }), W.NBD_EINVAL, 'unknown command');
          assert.equal(await answer({ type: 8, cookie: 15n, offset: 0, length: 4096 }), W.NBD_EINVAL, 'RESIZE');
          // What the protocol allows: FUA on any command, NO_HOLE on WRITE_ZEROES, REQ_ONE on BLOCK_STATUS.
          assert.equal(await answer({ type: W.NBD_CMD_FLUSH, cookie: 20n, offset: 0, length: 0, flags: W.NBD_CMD_FLAG_FUA }), 0);
          assert.equal(
            await answer({ type: W.NBD_CMD_WRITE, cookie: 21n, offset: 0, length: 512, flags: W.NBD_CMD_FLAG_FUA, payload: Buffer.alloc(512, 9) }),
            0,
          );
          assert.equal(await answer({ type: W.NBD_CMD_WRITE_ZEROES, cookie: 22n, offset: 4096, length: 4096, flags: W.NBD_CMD_FLAG_FUA | (1 << 1) }), 0);
          if (structured) assert.equal(await answer({ type: W.NBD_CMD_BLOCK_STATUS, cookie: 23n, offset: 0, length: 4096, flags: W.NBD_CMD_FLAG_REQ_ONE }), 0);
          assert.equal(await answer({ type: W.NBD_CMD_READ, cookie: 24n, offset: 0, length: 512, flags: W.NBD_CMD_FLAG_FUA }, 512), 0);
          assert.equal(dev.bytes[0], 9, 'the FUA write landed');
          assert.equal(dev.bytes[4096], 0, 'WRITE_ZEROES landed');
          assert.equal(dev.bytes[8192], 0x33, 'nothing else was written');
        } finally {
          p.destroy();
        }
      }
    }),
  );
});

test('nbd hostile: a WRITE over 32 MiB closes that connection cleanly; another connection is unaffected', { timeout: 30_000 }, async () => {
  await noEscapes(() =>
    withServer({ d: memoryDevice(MiB) }, {}, async (path, _server, logger) => {
      const bad = await opened(path, 'd');
      const good = await opened(path, 'd');
      try {
        bad.sendRequest({ type: W.NBD_CMD_WRITE, cookie: 1n, offset: 0, length: W.MAX_PAYLOAD + 1 });
        bad.socket.write(Buffer.alloc(1024 * 1024));
        await bad.closed;
        assert.ok(
          logger.lines.some((l) => /^warn nbd: closing connection.*write of 33554433 bytes/.test(l)),
          logger.lines.join('\n'),
        );
        good.sendRequest({ type: W.NBD_CMD_READ, cookie: 2n, offset: 0, length: 4096 });
        assert.equal((await good.readSimpleReply(() => 4096)).error, 0);
      } finally {
        bad.destroy();
        good.destroy();
      }
    }),
  );
});

test('nbd hostile: collaborators that throw (exports, extents) fail the request or the connection, never the process', { timeout: 30_000 }, async () => {
  const dev: NbdDevice = {
    ...memoryDevice(MiB),
    extents: () => {
      throw new Error('extents exploded');
    },
  };
  const exploding = {
    list: (): never => {
      throw new Error('list exploded');
    },
    open: (n: string) => {
      if (n === 'boom') throw new Error('open exploded');
      return n === 'd' ? dev : undefined;
    },
  };
  await noEscapes(async () => {
    const { NbdServer } = await import('../src/nbd/nbd-server.js');
    const { capturingLogger, nbdTempDir } = await import('./nbd-devices.js');
    const { join } = await import('node:path');
    const { dir, cleanup } = await nbdTempDir();
    const logger = capturingLogger();
    const server = new NbdServer({ exports: exploding, logger });
    try {
      const path = join(dir, 's');
      await server.listenUnix(path);
      const listing = await NbdPeer.connect(path);
      await listing.greet();
      listing.sendOption(W.NBD_OPT_LIST);
      await listing.closed;
      const opening = await NbdPeer.connect(path);
      await opening.greet();
      opening.sendOption(W.NBD_OPT_GO, nameAndInfos('boom', []));
      await opening.closed;
      // A collaborator's failure is the server's own: logged as an error.
      assert.ok(
        ['list exploded', 'open exploded'].every((m) => logger.lines.some((l) => l.startsWith('error') && l.includes(m))),
        logger.lines.join('\n'),
      );
      const p = await opened(path, 'd', { structured: true, allocation: true });
      try {
        p.sendRequest({ type: W.NBD_CMD_BLOCK_STATUS, cookie: 1n, offset: 0, length: 4096 });
        const c = await p.readChunk();
        assert.equal(c.type, W.NBD_REPLY_TYPE_ERROR);
        assert.equal(c.payload.readUInt32BE(0), W.NBD_EIO);
      } finally {
        p.destroy();
      }
    } finally {
      await server.close();
      await cleanup();
    }
  });
});

test('nbd hostile: replies to requests in flight are delivered before the server closes after NBD_CMD_DISC or NBD_OPT_ABORT', { timeout: 30_000 }, async () => {
  const dev = memoryDevice(W.MAX_PAYLOAD, { read: () => sleep(300) });
  dev.bytes.fill(0x44);
  await noEscapes(() =>
    withServer({ d: dev }, {}, async (path) => {
      const p = await opened(path, 'd');
      try {
        p.sendRequest({ type: W.NBD_CMD_READ, cookie: 1n, offset: 0, length: 4096 });
        p.sendRequest({ type: W.NBD_CMD_DISC, cookie: 2n, offset: 0, length: 0 });
        const r = await p.readSimpleReply(() => 4096);
        assert.equal(r.cookie, 1n);
        assert.equal(r.error, 0);
        await p.closed;
      } finally {
        p.destroy();
      }
      // A reply larger than what the server hands the socket at once.
      const big = await opened(path, 'd');
      try {
        big.sendRequest({ type: W.NBD_CMD_READ, cookie: 3n, offset: 0, length: W.MAX_PAYLOAD });
        big.sendRequest({ type: W.NBD_CMD_DISC, cookie: 4n, offset: 0, length: 0 });
        const r = await big.readSimpleReply(() => W.MAX_PAYLOAD);
        assert.equal(r.data.length, W.MAX_PAYLOAD);
        assert.equal(r.data[W.MAX_PAYLOAD - 1], 0x44);
        await big.closed;
      } finally {
        big.destroy();
      }
      const a = await NbdPeer.connect(path);
      try {
        await a.greet();
        a.sendOption(W.NBD_OPT_ABORT);
        assert.equal((await a.readOptionReplies())[0]!.type, W.NBD_REP_ACK);
        await a.closed;
      } finally {
        a.destroy();
      }
    }),
  );
});

test('nbd hostile: a BLOCK_STATUS reply carries at most 16384 extents', { timeout: 30_000 }, async () => {
  const dev: NbdDevice = {
    ...memoryDevice(64 * MiB),
    extents: (_o, length) => Array.from({ length: Math.floor(length / 512) }, (_, i) => ({ length: 512, hole: i % 2 === 0 })),
  };
  await withServer({ d: dev }, {}, async (path) => {
    const p = await opened(path, 'd', { structured: true, allocation: true });
    try {
      p.sendRequest({ type: W.NBD_CMD_BLOCK_STATUS, cookie: 1n, offset: 0, length: 64 * MiB });
      const c = await p.readChunk();
      assert.equal(c.type, W.NBD_REPLY_TYPE_BLOCK_STATUS);
      assert.equal((c.payload.length - 4) / 8, 16384);
    } finally {
      p.destroy();
    }
  });
});
