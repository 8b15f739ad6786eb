import { repositoryRoot } from '../repository/location.js';
import { callControl } from '../app/control-api.js';
import type { HandedOffRun } from '../app/control-runs.js';
import { LifeboatError, isLifeboatError, type ErrorCode } from '../core/errors.js';
import type { CommandContext } from './command.js';

const POLL_MS = 300;

export type HandedOffCopy = NonNullable<HandedOffRun['copyResult']>;

/**
 * `lifeboat copy run` while a server runs for the repository: the run is the
 * server's (kind 'copy' in its catalog, under its task cap), and this process
 * follows it, stops it on Ctrl-C, and ends as a local run would. Undefined
 * when no server runs for the repository (the CLI then copies itself).
 */
export async function copyThroughServer(ctx: CommandContext, repo: string, name: string): Promise<{ result: HandedOffCopy; runId: number } | undefined> {
  const root = repositoryRoot(repo);
  let id: number;
  try {
    ({ id } = await callControl<{ id: number }>(root, 'POST', '/runs', { job: name, kind: 'copy' }));
  } catch (err) {
    if (isLifeboatError(err, 'LFB_ERR_SERVER_NOT_RUNNING')) return undefined;
    throw err;
  }
  let stopping = false;
  for (;;) {
    if (ctx.signal.aborted && !stopping) {
      stopping = true;
      ctx.progress(`stopping copy run ${id} on the server`);
      await callControl(root, 'DELETE', `/runs/${id}`).catch(() => undefined);
    }
    const run = await callControl<HandedOffRun>(root, 'GET', `/runs/${id}`);
    if (run.state === 'queued' || run.state === 'running') ctx.progress(`copy run ${id} ${run.state} on the server`);
    else {
      if (run.copyResult) return { result: run.copyResult, runId: id };
      if (run.state === 'interrupted' || run.state === 'stopped')
        throw new LifeboatError('LFB_ERR_INTERRUPTED', `copy run ${id} was ${run.state} on the server${run.error ? `: ${run.error.message}` : ''}`);
      throw new LifeboatError((run.error?.code ?? 'LFB_ERR_INTERNAL') as ErrorCode, run.error?.message ?? `copy run ${id} ended ${run.state}`, {
        details: { run: id },
      });
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
