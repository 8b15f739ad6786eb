import { throwIfInterrupted } from '../../core/cancel.js';
import { LifeboatError } from '../../core/errors.js';
import { formatBytes } from '../../core/units.js';
import { describeDamage } from '../../repository/index.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, optionalString, requireString } from '../command.js';
import { ProgressMeter } from '../progress.js';

export const verify: Command = {
  name: 'verify',
  usage: 'verify <job> --repo <dir> [--point <id|latest> | --all] [--repair] [--json]',
  summary: 'health check: read every block a point needs (or every file of the job) and check its SHA-256',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    point: { type: 'string', description: 'the restore point to check: an id (or unique prefix) or latest', defaultText: 'latest' },
    all: { type: 'boolean', description: 'check every backup file of the job instead of one point', defaultText: 'one point' },
    repair: { type: 'boolean', description: 'after damage is found, back up again from the source so a whole point exists', defaultText: 'report only' },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const all = ctx.values['all'] === true;
    const point = optionalString(ctx, 'point');
    if (all && point !== undefined) throw new LifeboatError('LFB_ERR_USAGE', '--point and --all exclude each other');
    let repairMeter: { disk: number; meter: ProgressMeter } | undefined;
    const blockMeter = new ProgressMeter();
    const r = await ctx.service.verify(requireString(ctx, 'repo'), ctx.args[0]!, {
      point,
      all,
      repair: ctx.values['repair'] === true,
      onBackupProgress: (p) => {
        // Progress comes between blocks: an interrupt stops the repair run there, as it stops a backup.
        throwIfInterrupted(ctx.signal);
        if (repairMeter?.disk !== p.disk) repairMeter = { disk: p.disk, meter: new ProgressMeter() };
        ctx.progress(`repair: reading the source, disk ${p.disk + 1} of ${p.diskCount}: ${repairMeter.meter.line(p.bytesDone, p.bytesTotal)}`);
      },
      onProgress: (p) => {
        // Between blocks too; a check that did not finish records no health.
        throwIfInterrupted(ctx.signal);
        const eta = blockMeter.eta(p.blocksDone, p.blocksTotal);
        ctx.progress(
          `verifying: ${p.blocksDone} of ${p.blocksTotal} blocks (${Math.floor((p.blocksDone / Math.max(1, p.blocksTotal)) * 100)}%)${eta === undefined ? '' : `, ETA ${eta}`}`,
        );
      },
    });
    if (ctx.values['json'] === true) ctx.out(JSON.stringify(r, null, 2));
    else {
      for (const p of r.problems)
        ctx.out(`CORRUPT ${p.file}${p.offset !== undefined ? ` at file offset ${p.offset} (disk ${p.disk}, block ${p.block})` : ''}: ${p.message} [${p.code}]`);
      ctx.out(
        `${r.problems.length === 0 ? 'OK' : `${r.problems.length} problem(s)`}: ${r.blocks} stored blocks (${formatBytes(r.storedBytes)}) in ${r.files} file(s), ${r.points.length} point(s) checked`,
      );
      for (const d of r.damagedPoints) ctx.out(`point ${d.id} marked damaged: ${describeDamage(d.damage)}`);
      if (r.repair && 'skipped' in r.repair) ctx.out(`repair: nothing to do: ${r.repair.skipped}`);
      else if (r.repair) {
        const b = r.repair.backup;
        ctx.out(`repair: new ${b.kind} ${b.pointId} (${b.trigger}); ${r.repair.whole ? 'it verifies whole' : 'it reads damaged blocks too'}`);
      }
    }
    const repaired = r.repair !== undefined && 'whole' in r.repair && r.repair.whole;
    if (r.problems.length > 0 && !repaired) {
      const blocks = r.problems.some((p) => p.code === 'LFB_ERR_BLOCK_CORRUPT');
      throw new LifeboatError(
        blocks ? 'LFB_ERR_BLOCK_CORRUPT' : 'LFB_ERR_FILE_CORRUPT',
        `verify found ${r.problems.length} problem(s) in job ${ctx.args[0]}; restore another point, or back up again`,
      );
    }
  },
};
