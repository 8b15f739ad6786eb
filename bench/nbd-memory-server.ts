/**
 * Lifeboat's NBD server (src/nbd) over a disk held in memory: a raw image
 * read whole into one buffer, each READ answered with a view of it. No
 * repository, cache, checksum or copy: what is left is the protocol, the
 * server's event loop and the socket, so bench:nbd shows how much of each
 * gap to nbdkit the transport alone makes (the ceiling of any device behind
 * this server). Run by nbd-bench.ts:
 *
 *   node dist/bench/nbd-memory-server.js IMAGE PORT
 */
import { readFileSync } from 'node:fs';
import { createLogger } from '../src/core/log.js';
import { NbdServer } from '../src/nbd/index.js';
import type { NbdDevice } from '../src/nbd/index.js';

const [image, port] = process.argv.slice(2);
if (image === undefined || port === undefined) throw new Error('usage: nbd-memory-server IMAGE PORT');
// Whole into memory: readFileSync takes at most 2 GiB, which bench:nbd's 1 GiB image is under.
const bytes = readFileSync(image);
const device: NbdDevice = {
  size: bytes.length,
  read: (offset, length) => Promise.resolve(bytes.subarray(offset, offset + length)),
  write: () => Promise.reject(new Error('the in-memory disk is read-only')),
  flush: () => Promise.resolve(),
  extents: (_offset, length) => [{ length, hole: false }],
};
const server = new NbdServer({ exports: { list: () => [{ name: '', description: 'in memory' }], open: () => device }, logger: createLogger('error') });
await server.listen(Number(port), '127.0.0.1');
process.stdout.write('ready\n');
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
