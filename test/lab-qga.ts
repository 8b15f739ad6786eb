/**
 * A guest-agent ping for the lab image's test, written from the protocol rather than with src/lab's client, so
 * that the image is proven to run a working agent whatever the product's client does.
 */
import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';

/**
 * Asks the guest agent on `socket` for guest-ping, after the guest-sync-delimited handshake the protocol asks
 * for (a 0xFF marks where the answer to our sync starts, past anything stale). Retries until `ms` pass;
 * returns the raw answer line to guest-ping.
 */
export async function qgaPing(socket: string, ms = 30_000): Promise<string> {
  const deadline = performance.now() + ms;
  let last = '';
  while (performance.now() < deadline) {
    const id = randomBytes(4).readUInt32BE(0) >>> 1;
    try {
      return await qgaExchange(socket, id, Math.min(5000, Math.max(500, deadline - performance.now())));
    } catch (err) {
      last = (err as Error).message;
      await sleep(500);
    }
  }
  throw new Error(`no guest-ping answer on ${socket} within ${ms} ms: ${last}`);
}

function qgaExchange(path: string, id: number, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let buf = Buffer.alloc(0);
    let synced = false;
    const timer = setTimeout(() => finish(new Error(synced ? 'guest-ping unanswered' : 'guest-sync-delimited unanswered')), ms);
    const finish = (err: Error | undefined, value?: string): void => {
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    s.on('error', (err) => finish(err));
    s.on('connect', () => s.write(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!synced) {
        const ff = buf.lastIndexOf(0xff);
        if (ff < 0) return;
        const text = buf.subarray(ff + 1).toString();
        const nl = text.indexOf('\n');
        if (nl < 0) return;
        const line = text.slice(0, nl);
        if (!line.includes(`"return": ${id}`)) return void finish(new Error(`unexpected sync answer ${line}`));
        synced = true;
        buf = Buffer.from(text.slice(nl + 1));
        s.write('{"execute":"guest-ping"}\n');
      }
      const text = buf.toString();
      const nl = text.indexOf('\n');
      if (synced && nl >= 0) finish(undefined, text.slice(0, nl).trim());
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
