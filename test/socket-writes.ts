import { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Test support: counts the writes (one uv_write each) that the sockets `counted` picks make while `fn` runs. */
export async function serverWrites(counted: (s: Socket) => boolean, fn: () => Promise<void>): Promise<number> {
  const proto = Socket.prototype as unknown as Record<'_write' | '_writev', (...a: unknown[]) => unknown>;
  const original = { _write: proto._write, _writev: proto._writev };
  let calls = 0;
  for (const name of ['_write', '_writev'] as const) {
    proto[name] = function (this: Socket, ...a: unknown[]) {
      // The runner's own pipes (a warning on stderr) are never the server's.
      if (this !== (process.stdout as unknown) && this !== (process.stderr as unknown) && counted(this)) calls += 1;
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

/** Waits until `ready()` holds; fails after `ms` saying what it waited for (a regression must not hang the file). */
export async function waitUntil(what: string, ready: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ready()) {
    if (performance.now() > deadline) throw new Error(`gave up after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}
