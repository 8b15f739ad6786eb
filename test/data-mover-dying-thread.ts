/**
 * The data mover's real thread, which dies (an uncaught error) as soon as
 * it is told to stop a run: test/data-mover.test.ts stops a run midway
 * through its data to see what the server side does with a thread that
 * dies holding a job lock and a half-written file.
 */
import { parentPort } from 'node:worker_threads';
import '../src/service/runtime/data-mover-thread.js';

parentPort!.on('message', (m: { type: string }) => {
  if (m.type === 'stop') throw new Error('the test thread died on purpose');
});
