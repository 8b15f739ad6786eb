import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../src/core/log.js';
import type { XdrReader } from '../src/rpc/index.js';
import { RpcServer, encodeCall, recordHeader, type Procedure, type RpcServerOptions } from '../src/rpc/index.js';
import { RpcTestClient } from '../src/testing/rpc-client.js';

const logger = createLogger('error');
const GATED_PROG = 0x20000ffe;

/** A program whose procedure 1 waits for the test to open a gate, counting how many run at once. */
function gatedProgram(): {
  program: { prog: number; name: string; versions: Map<number, Map<number, Procedure>> };
  running: () => number;
  peak: () => number;
  started: () => number;
  open: () => void;
} {
  let running = 0;
  let peak = 0;
  let started = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const procs = new Map<number, Procedure>([
    [0, (a) => a.end()],
    [
      1,
      async (a, out) => {
        a.end();
        running += 1;
        started += 1;
        peak = Math.max(peak, running);
        await gate;
        running -= 1;
        out.u32(started);
      },
    ],
  ]);
  return {
    program: { prog: GATED_PROG, name: 'gated', versions: new Map([[1, procs]]) },
    running: () => running,
    peak: () => peak,
    started: () => started,
    open: () => release(),
  };
}

async function withRpcServer(
  opts: Partial<RpcServerOptions>,
  fn: (port: number, server: RpcServer) => Promise<void>,
  program = gatedProgram().program,
): Promise<void> {
  const server = new RpcServer({ logger, ...opts });
  server.register(program);
  const port = await server.listen(0, '127.0.0.1');
  try {
    await fn(port, server);
  } finally {
    await server.close();
  }
}

function replyStatus(r: XdrReader): number {
  assert.equal(r.u32(), 1, 'REPLY');
  assert.equal(r.u32(), 0, 'MSG_ACCEPTED');
  r.u32();
  r.opaque(400);
  return r.u32();
}

test('rpc server: 1000 calls in one write never run more than maxInFlight at once, and all are answered', async () => {
  const gated = gatedProgram();
  await withRpcServer(
    { maxInFlight: 8 },
    async (port) => {
      const c = await RpcTestClient.connect(port);
      try {
        const calls = 1000;
        const replies = Array.from({ length: calls }, (_, i) => c.expect(i + 1));
        c.raw(
          Buffer.concat(
            Array.from({ length: calls }, (_, i) => encodeCall(i + 1, GATED_PROG, 1, 1, Buffer.alloc(0))).flatMap((m) => [recordHeader(m.length), m]),
          ),
        );
        for (let waited = 0; gated.running() < 8 && waited < 5000; waited += 10) await sleep(10);
        await sleep(200); // time for any record beyond the limit to be (wrongly) dispatched
        assert.equal(gated.peak(), 8, `calls running at once: ${gated.peak()}`);
        gated.open();
        const all = await Promise.all(replies);
        assert.equal(all.filter((r) => replyStatus(r) === 0).length, calls);
        assert.equal(gated.started(), calls);
        assert.ok(gated.peak() <= 8, `calls running at once: ${gated.peak()}`);
      } finally {
        gated.open();
        c.close();
      }
    },
    gated.program,
  );
});
