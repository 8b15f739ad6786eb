import { readFileSync } from 'node:fs';
import { formatBytes } from '../../core/units.js';
import { NATIVE_HELPER_MISSING, nativeHelper } from '../../core/native.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, WAIT_OPTION, requireString } from '../command.js';
import { changesOf, describeChanges, filesByPoint } from '../point-report.js';
import { formatRate, ProgressMeter } from '../progress.js';
import { backupThroughServer } from '../hand-off.js';
import { LifeboatError } from '../../core/errors.js';
import { repositoryRoot } from '../../repository/location.js';

export const backup: Command = {
  name: 'backup',
  usage: 'backup <job> --repo <dir> [--active-full] [--wait] [--accept-source-change] [--here] [--json]',
  summary: 'run the job: a full the first time, then increments',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    'active-full': { type: 'boolean', description: 'read the whole source and start a new chain', defaultText: 'as the job schedules' },
    wait: WAIT_OPTION,
    'accept-source-change': {
      type: 'boolean',
      description: 'accept a source that lost more than half its size or changed format',
      defaultText: 'refuse with LFB_ERR_SOURCE_CHANGED',
    },
    here: {
      type: 'boolean',
      description: 'back up a job that names a data mover on this host anyway (its disks as this host sees them)',
      defaultText: 'refuse with LFB_ERR_INVALID_ARGUMENT: its disks are read where its mover runs',
    },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const started = process.hrtime.bigint();
    const repo = requireString(ctx, 'repo');
    const job = ctx.args[0]!;
    let meter: { disk: number; meter: ProgressMeter } | undefined;
    const asked = {
      activeFull: ctx.values['active-full'] === true,
      waitMs: ctx.values['wait'] === true ? 6 * 3600 * 1000 : 0,
      // A source that shrank to less than half or changed format is refused unless the user says it is intended.
      acceptSourceChange: ctx.values['accept-source-change'] === true,
    };
    // A server running for the repository runs the job (recorded in its catalog, under its task cap); this process follows.
    const handed = await backupThroughServer(ctx, repo, { job, ...asked });
    if (!handed && ctx.values['here'] !== true) {
      // Its disks are named as its mover's host sees them: here the same names may be other disks (nbd://127.0.0.1, /dev/sdb).
      const mover = (await ctx.service.jobDefinition(repositoryRoot(repo), job)).mover;
      if (mover !== undefined)
        throw new LifeboatError(
          'LFB_ERR_INVALID_ARGUMENT',
          `job ${job} runs on data mover ${mover}: start lifeboat serve for ${repo} (it hands the backup to the mover), or give --here to read its disks on this host`,
          { details: { job, mover } },
        );
    }
    const r =
      handed?.result ??
      (await ctx.service.backup(repo, job, {
        ...asked,
        signal: ctx.signal,
        onProgress: (p) => {
          if (meter?.disk !== p.disk) meter = { disk: p.disk, meter: new ProgressMeter() };
          ctx.progress(`disk ${p.disk + 1}/${p.diskCount}: ${meter.meter.line(p.bytesDone, p.bytesTotal)}`);
        },
      }));
    const serverRun = handed ? { serverRun: handed.runId } : {};
    const secs = Number(process.hrtime.bigint() - started) / 1e9;
    // How the changes were found (full read, hashes, dirty bitmap) and why CBT fell back, as the point records it.
    const { state } = await ctx.service.points(repo, job);
    const changes = changesOf(filesByPoint(state).get(r.pointId));
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify({ ...r, changes, seconds: secs, io: processIo(), ...serverRun }));
      return;
    }
    ctx.out(`${r.kind} ${r.pointId} → ${r.file} (${r.trigger})${handed ? `, run ${handed.runId} of the server` : ''}`);
    ctx.out(`  changes found by ${describeChanges(changes).replace(/^(full|hash|cbt): (.*)$/, '$1 ($2)')}`);
    ctx.out(
      `  scanned ${formatBytes(r.bytesRead)} in ${secs.toFixed(1)} s (${formatRate(r.bytesRead / Math.max(secs, 1e-6))}); stored ${formatBytes(r.bytesStored)}: ${r.blocksStored} blocks new, ${r.blocksUnchanged} unchanged, ${r.blocksZero} zero, ${r.blocksDeduped} deduplicated`,
    );
    // Read here (not by a server or a mover): the holes of sparse images were read if the helper is missing.
    if (!handed && nativeHelper() === null) ctx.out(`  note: ${NATIVE_HELPER_MISSING}`);
    ctx.out(
      `  time by step: ${Object.entries(r.steps)
        .filter(([, ms]) => ms >= 5)
        .map(([step, ms]) => `${step} ${(ms / 1000).toFixed(2)} s`)
        .join(', ')}`,
    );
    if (r.synthetic)
      ctx.out(
        `  synthetic full → ${r.synthetic.file}: ${r.synthetic.blocksCopied} stored blocks copied (${formatBytes(r.synthetic.bytesCopied)}), no source read; ${r.synthetic.removedIncrement} removed`,
      );
    if (r.transform && 'skipped' in r.transform) ctx.out(`  transform into rollbacks skipped: ${r.transform.skipped}`);
    else if (r.transform)
      ctx.out(
        `  chain ${r.transform.chainId.slice(0, 8)} transformed into ${r.transform.rollbacks.length} rollback(s): ${r.transform.blocksCopied} stored blocks copied (${formatBytes(r.transform.bytesCopied)}); ${r.transform.removed.length} file(s) removed`,
      );
    for (const n of r.cleanedUp) ctx.out(`  removed ${n} left by an interrupted run`);
    for (const a of r.retention) {
      if (a.skipped !== undefined) ctx.out(`  retention: postponed (${a.skipped}) — ${a.action.reason}`);
      else if (a.action.type === 'delete-chain') ctx.out(`  retention: deleted chain of ${a.action.pointIds.length} point(s) — ${a.action.reason}`);
      else if (a.action.type === 'delete-rollback') ctx.out(`  retention: deleted rollback ${a.action.pointId} — ${a.action.reason}`);
      else if (a.action.type === 'delete-increments')
        ctx.out(`  retention: deleted ${a.action.pointIds.length} increment(s), kept their GFS full — ${a.action.reason}`);
      else ctx.out(`  retention: merged ${a.action.incrementPointId} into the full (${a.merge?.blocksCopied ?? 0} blocks copied) — ${a.action.reason}`);
    }
  },
};

/** This process's bytes through read/write system calls (Linux /proc/self/io), for benchmarks; null elsewhere. */
function processIo(): { readBytes: number; writtenBytes: number } | null {
  try {
    const text = readFileSync('/proc/self/io', 'utf8');
    const get = (k: string): number => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    return { readBytes: get('rchar'), writtenBytes: get('wchar') };
  } catch {
    return null;
  }
}
