/**
 * The load and the sampling of bench:service's second measurement: the list
 * endpoints timed one request at a time, while backups run in the server
 * (through its API) or in `lifeboat backup` processes of their own.
 */
import { spawn } from 'node:child_process';
import { bin } from './bench-util.js';
import { waitForRun, type ApiClient, type RunView } from './service-server.js';

export const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

/** Each endpoint once per round, `samples` rounds (after 20 unmeasured): p50 and p99 by endpoint. */
export async function sampleEndpoints(
  api: ApiClient,
  endpoints: readonly (readonly [string, string])[],
  samples: number,
): Promise<Map<string, { p50: number; p99: number; max: number }>> {
  for (let i = 0; i < 20; i++) for (const [, path] of endpoints) await api.call('GET', path);
  const ms = new Map<string, number[]>(endpoints.map(([label]) => [label, []]));
  for (let i = 0; i < samples; i++) for (const [label, path] of endpoints) ms.get(label)!.push((await api.call('GET', path)).ms);
  return new Map(
    [...ms].map(([label, xs]) => {
      xs.sort((a, b) => a - b);
      return [label, { p50: percentile(xs, 50), p99: percentile(xs, 99), max: xs.at(-1)! }];
    }),
  );
}

/** 4 backups kept running: each job started again (through the API) as soon as its run ends. */
export function keepBackupsRunning(api: ApiClient, repoName: string, jobs: readonly string[]): () => Promise<{ runs: number; bytesRead: number }> {
  let stop = false;
  let runs = 0;
  let bytesRead = 0;
  const loops = jobs.map(async (job) => {
    while (!stop) {
      const { body } = await api.call<RunView>('POST', `/api/v1/repositories/${repoName}/jobs/${job}/run`, 202);
      const { run } = await waitForRun(api, body.id);
      if (run.state !== 'succeeded') throw new Error(`load run ${run.id} of ${job}: ${run.state} ${run.errorMessage ?? ''}`);
      runs += 1;
      bytesRead += run.bytesRead;
    }
  });
  return async () => {
    stop = true;
    await Promise.all(loops);
    return { runs, bytesRead };
  };
}

/** The control: 4 backups as busy as the server's, but each in a `lifeboat backup` process of its own (another repository). */
export function keepCliBackupsRunning(jobs: readonly string[], otherRepo: string): () => Promise<{ runs: number }> {
  let stop = false;
  let runs = 0;
  const loops = jobs.map(async (job) => {
    while (!stop) {
      await new Promise<void>((resolve, reject) => {
        const p = spawn(process.execPath, [bin, 'backup', job, '--repo', otherRepo], { stdio: 'ignore' });
        p.on('error', reject);
        p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`lifeboat backup ${job} --repo ${otherRepo}: exit ${code}`))));
      });
      runs += 1;
    }
  });
  return async () => {
    stop = true;
    await Promise.all(loops);
    return { runs };
  };
}
