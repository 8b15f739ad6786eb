import type { Writable } from 'node:stream';

const corked = new WeakSet<Writable>();

/**
 * Holds what is written to `stream` until the event loop's check phase, then
 * hands it to the kernel at once. A server that replies as each request
 * finishes makes one system call per reply; on a loopback socket that call
 * also runs the receiver's side of TCP, and it was the largest cost of 4 KiB
 * reads at 32 in flight. Corked this way, every reply made in one turn of the
 * loop (the requests of one socket read, the file reads that completed
 * together) goes out in one writev. The check phase follows the poll phase
 * of the same turn, so a lone reply waits microseconds, not a timer tick.
 */
export function batchWritesThisTurn(stream: Writable): void {
  if (corked.has(stream)) return;
  corked.add(stream);
  stream.cork();
  setImmediate(() => {
    corked.delete(stream);
    stream.uncork();
  });
}
