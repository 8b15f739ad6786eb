import type { ControlRuns, HandedOffRun, HandOffRequest } from '../../app/control-runs.js';
import type { Catalog } from '../../catalog/catalog.js';
import type { ServiceRuntime } from './service-runtime.js';
import { LifeboatError } from '../../core/errors.js';

/**
 * The control API's runs (src/app/control-runs.ts) over the runtime: a
 * `lifeboat backup` while this server runs becomes a manual run here,
 * recorded and capped like any other, and the CLI follows it.
 */
export function handOff(runtime: ServiceRuntime, catalog: Catalog, repo: string): ControlRuns {
  return {
    async start(req: HandOffRequest) {
      // A standby would queue the run for the leader, whose result and progress the command could not follow from here.
      if (!runtime.leading)
        throw new LifeboatError(
          'LFB_ERR_STANDBY',
          `the server of ${repo} here stands by: ${await runtime.leader()} runs the scheduler and the runs; run it there, or through the HTTP API of either`,
        );
      if (req.kind === 'surebackup') return { id: (await runtime.runSureBackupNow(repo, req.job, 'manual')).id };
      if (req.kind === 'copy') return { id: (await runtime.runCopyNow(repo, req.job, 'manual')).id };
      const run = await runtime.runNow(repo, req.job, 'manual', { activeFull: req.activeFull, acceptSourceChange: req.acceptSourceChange, waitMs: req.waitMs });
      return { id: run.id };
    },
    async get(id: number): Promise<HandedOffRun> {
      const run = await catalog.getRun(id);
      const progress = runtime.progressOf(id);
      const result = runtime.resultOf(id);
      const copyResult = runtime.copyResultOf(id);
      const report = run.reportId === null ? undefined : await catalog.getLabReport(run.repo, run.reportId).catch(() => undefined);
      return {
        id,
        state: run.state,
        ...(run.state === 'queued' ? { waitingFor: runtime.runningCount() } : {}),
        ...(progress ? { progress } : {}),
        ...(result ? { result } : {}),
        ...(copyResult ? { copyResult } : {}),
        ...(report ? { labReport: { id: report.id, ok: report.ok, reportDir: report.reportDir } } : {}),
        ...(run.errorCode ? { error: { code: run.errorCode, message: run.errorMessage ?? run.errorCode } } : {}),
      };
    },
    stop: (id: number) => runtime.stop(id),
  };
}
