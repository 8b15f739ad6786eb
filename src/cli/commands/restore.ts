import { throwIfInterrupted } from '../../core/cancel.js';
import { LifeboatError } from '../../core/errors.js';
import { formatBytes } from '../../core/units.js';
import { RESTORE_FORMATS, type RestoreFormat } from '../../restore/index.js';
import type { Command } from '../command.js';
import { REPO_OPTION, optionalString, requireString } from '../command.js';
import { ProgressMeter } from '../progress.js';

export const restore: Command = {
  name: 'restore',
  usage:
    "restore <job> --repo <dir> --point <id|latest> --to <file|folder/> [--disk <n|name>] [--format raw|qcow2|vmdk|vhdx|vdi] [--force] [--json]   (into a folder: <folder>/<disk>.<format>; format: --format, else the file's extension, else the source's)",
  summary: 'restore a point to disk images',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    point: { type: 'string', description: 'the restore point: an id (or unique prefix) or latest' },
    to: { type: 'string', description: 'target file or block device, or an existing folder ending in / (one <disk>.<format> per disk)' },
    disk: { type: 'string', description: 'restore only this disk (number or name)', defaultText: 'every disk' },
    format: { type: 'string', description: 'image format: raw, qcow2, vmdk, vhdx or vdi', defaultText: "the --to file's extension, else the source's format" },
    force: { type: 'boolean', description: 'overwrite an existing target', defaultText: 'refuse with LFB_ERR_TARGET_EXISTS' },
    json: { type: 'boolean', description: 'print the point and each target written as JSON', defaultText: 'human-readable text' },
  },
  async run(ctx) {
    // Default: each disk in the format it was backed up from.
    const format = optionalString(ctx, 'format');
    if (format !== undefined && !(RESTORE_FORMATS as readonly string[]).includes(format))
      throw new LifeboatError('LFB_ERR_USAGE', `--format must be one of ${RESTORE_FORMATS.join(', ')}`);
    const started = process.hrtime.bigint();
    let meter: { disk: string; meter: ProgressMeter } | undefined;
    const r = await ctx.service.restore(requireString(ctx, 'repo'), ctx.args[0]!, {
      point: requireString(ctx, 'point'),
      to: requireString(ctx, 'to'),
      disk: optionalString(ctx, 'disk'),
      format: format as RestoreFormat | undefined,
      force: ctx.values['force'] === true,
      onProgress: (p) => {
        // Progress comes between writes: an interrupt stops there, and restore removes its unfinished target.
        throwIfInterrupted(ctx.signal);
        if (meter?.disk !== p.disk) meter = { disk: p.disk, meter: new ProgressMeter() };
        ctx.progress(`${p.disk}: ${meter.meter.line(p.bytesDone, p.bytesTotal)}`);
      },
    });
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify({ point: r.point, targets: r.targets, seconds: Number(process.hrtime.bigint() - started) / 1e9 }));
      return;
    }
    for (const t of r.targets) ctx.out(`restored point ${r.point.id} disk ${t.disk} → ${t.path} (${t.format}, ${formatBytes(t.bytesWritten)} of data written)`);
  },
};
