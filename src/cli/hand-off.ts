import { repositoryRoot } from '../repository/location.js';
// The control modules alone: app/index.js would load the whole server (NFS, NBD, instant recovery) into every command.
import { callControl } from '../app/control-api.js';
import type { BackupResult, HandedOffRun, HandOffRequest } from '../app/control-runs.js';
import { LifeboatError, isLifeboatError, type ErrorCode } from '../core/errors.js';
import type { CommandContext } from './command.js';
import { ProgressMeter } from './progress.js';

const POLL_MS = 300;

/**
 * `lifeboat backup` while a server runs for the repository: the run is the
 * server's (its catalog records it, its task cap and warm workers apply), and
 * this process follows it, stops it on Ctrl-C, and ends as a local run would.
 * Undefined when no server runs for the repository (the CLI then runs the job itself).
 */
export async function backupThroughServer(
  ctx: CommandContext,
  repo: string,
  req: HandOffRequest,
): Promise<{ result: BackupResult; runId: number } | undefined> {
  const root = repositoryRoot(repo);
  let id: number;
  try {
    ({ id } = await callControl<{ id: number }>(root, 'POST', '/runs', { ...req, waitMs: req.waitMs > 0 ? req.waitMs : undefined }));
  } catch (err) {
    if (isLifeboatError(err, 'LFB_ERR_SERVER_NOT_RUNNING')) return undefined;
    throw err;
  }
  let stopping = false;
  let meter: { disk: number; meter: ProgressMeter } | undefined;
  for (;;) {
    if (ctx.signal.aborted && !stopping) {
      stopping = true;
      ctx.progress(`stopping run ${id} on the server`);
      await callControl(root, 'DELETE', `/runs/${id}`).catch(() => undefined);
    }
    const run = await callControl<HandedOffRun>(root, 'GET', `/runs/${id}`);
    if (run.state === 'queued') ctx.progress(`run ${id} queued on the server${run.waitingFor ? ` (${run.waitingFor} run(s) going)` : ''}`);
    else if (run.state === 'running' && run.progress) {
      const p = run.progress;
      if (meter?.disk !== p.disk) meter = { disk: p.disk, meter: new ProgressMeter() };
      ctx.progress(`disk ${p.disk + 1}/${p.diskCount}: ${meter.meter.line(p.bytesDone, p.bytesTotal)}`);
    } else if (run.state !== 'running') {
      if (run.result) return { result: run.result, runId: id };
      if (run.state === 'interrupted' || run.state === 'stopped')
        throw new LifeboatError('LFB_ERR_INTERRUPTED', `run ${id} was ${run.state} on the server${run.error ? `: ${run.error.message}` : ''}`);
      const code = (run.error?.code ?? 'LFB_ERR_INTERNAL') as ErrorCode;
      throw new LifeboatError(code, run.error?.message ?? `run ${id} ended ${run.state}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
