// A second writer on a SQLite catalog, in its own thread (its own connection,
// and none of the first thread's in-process write queue): what another
// process on the same file looks like to SQLite. Used by catalog-sqlite.test.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { openCatalog } from '../src/catalog/open.js';

const { spec, runId, batches, tag } = workerData as { spec: string; runId: number; batches: number; tag: string };
const catalog = await openCatalog(spec);
try {
  for (let i = 0; i < batches; i++) {
    await catalog.appendLog(
      runId,
      [0, 1, 2].map((k) => ({ at: new Date(0).toISOString(), level: 'info' as const, message: `${tag}${i}:${k}` })),
    );
    await catalog.createRun({ repo: '/repos/a', job: tag, trigger: 'api', attempt: 1, retryOf: null, queuedAt: new Date(0).toISOString() });
  }
} finally {
  await catalog.close();
}
parentPort?.postMessage('done');
