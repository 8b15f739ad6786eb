import { Socket } from 'node:net';

/** Test support: counts the writes (one uv_write each) that sockets other than `client` make while `fn` runs. */
export async function serverWrites(client: () => Socket | undefined, fn: () => Promise<void>): Promise<number> {
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
