import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../src/core/log.js';
import { RpcServer, type Procedure, type RpcProgram, type RpcServerOptions, type XdrReader } from '../src/rpc/index.js';
import type { RpcTestClient } from '../src/testing/rpc-client.js';

/** Test support shared by the rpc-*.test.ts files. */

export const GATED_PROG = 0x20000ffe;

/** A program whose procedure 1 waits for the test to open a gate, counting how many run at once. */
export function gatedProgram(): {
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

/** accept_stat of an accepted reply (the reader is positioned after the xid). */
export function replyStatus(r: XdrReader): number {
  assert.equal(r.u32(), 1, 'REPLY');
  assert.equal(r.u32(), 0, 'MSG_ACCEPTED');
  r.u32();
  r.opaque(400);
  return r.u32();
}

/** Resolves true if the socket is closed by the peer within `ms`. */
export async function closedWithin(c: RpcTestClient, ms: number): Promise<boolean> {
  return Promise.race([c.closed.then(() => true), sleep(ms).then(() => false)]);
}

/** Runs `fn` against an RpcServer on an ephemeral loopback port, closed in every outcome. */
export async function withRpcServer(
  opts: Partial<RpcServerOptions>,
  fn: (port: number, server: RpcServer) => Promise<void>,
  program: RpcProgram = gatedProgram().program,
): Promise<void> {
  const server = new RpcServer({ logger: createLogger('error'), ...opts });
  server.register(program);
  const port = await server.listen(0, '127.0.0.1');
  try {
    await fn(port, server);
  } finally {
    await server.close();
  }
}
