/**
 * An NbdServer in a process of its own, for tests that measure the server's
 * memory (VmHWM) without the test's own buffers in the count.
 *
 * argv[2]: JSON { socket, size, block, gated?, listed?, options? } serving one
 * patternDevice as export "d" (and, in NBD_OPT_LIST, `listed` more names
 * with long descriptions). Prints "ready" when listening. Reads lines on
 * stdin: "open" lets gated device calls proceed; "stats <seq>" prints the
 * device's counters and seq as one JSON line.
 */
import { createInterface } from 'node:readline';
import { createLogger } from '../src/core/log.js';
import { NbdServer, type NbdServerOptions } from '../src/nbd/nbd-server.js';
import { patternDevice } from './nbd-devices.js';

interface ChildConfig {
  readonly socket: string;
  readonly size: number;
  readonly block: number;
  readonly gated?: boolean;
  readonly listed?: number;
  readonly options?: Partial<NbdServerOptions>;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
let open!: () => void;
const opened = new Promise<void>((r) => (open = r));
const dev = patternDevice(config.size, config.block, config.gated ? () => opened : undefined);
const names = [{ name: 'd', description: '' }];
for (let i = 0; i < (config.listed ?? 0); i++) names.push({ name: `session-${i}/disk0`, description: `job ${i} point ${'x'.repeat(100)}` });
const server = new NbdServer({
  exports: { list: () => names, open: (n) => (n === 'd' ? dev : undefined) },
  logger: createLogger(),
  ...config.options,
});
await server.listenUnix(config.socket);
process.stdout.write('ready\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, seq] = line.split(' ');
  if (command === 'open') open();
  else if (command === 'stats')
    process.stdout.write(JSON.stringify({ seq: Number(seq), reads: dev.reads, writes: dev.writes, active: dev.active, peakActive: dev.peakActive }) + '\n');
});
process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
