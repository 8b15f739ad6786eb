import { formatBytes } from '../../core/units.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, WAIT_OPTION, optionalString, requireString } from '../command.js';
import { parseDuration } from '../../core/schedule-text.js';

export const compact: Command = {
  name: 'compact',
  usage: 'compact <job> --repo <dir> [--pack-grace <duration>] [--wait] [--json]',
  summary: 'rewrite backup files that merges and reverse runs left with dead space, and report what was reclaimed',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    wait: WAIT_OPTION,
    'pack-grace': {
      type: 'string',
      description: 'on object storage, remove packs no file names once they are older than this (a writer on another host may not have committed them yet)',
      defaultText: '6h',
    },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const grace = optionalString(ctx, 'pack-grace');
    const r = await ctx.service.compact(requireString(ctx, 'repo'), ctx.args[0]!, {
      waitMs: ctx.values['wait'] === true ? 6 * 3600 * 1000 : 0,
      ...(grace !== undefined ? { packGraceMs: parseDuration(grace, '--pack-grace') } : {}),
    });
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(r, null, 2));
    for (const f of r.files) ctx.out(`${f.file}: ${formatBytes(f.bytesBefore)} → ${formatBytes(f.bytesAfter)}`);
    ctx.out(r.files.length === 0 ? 'nothing to compact' : `reclaimed ${formatBytes(r.bytesReclaimed)} in ${r.files.length} file(s)`);
    if (r.objects === 'busy') ctx.out('object storage: a job of the repository is running; unused packs are left for the next compact');
    else if (r.objects !== undefined)
      ctx.out(
        `object storage: removed ${r.objects.packsRemoved} pack(s) no file uses (${formatBytes(r.objects.bytesFreed)}) and ${r.objects.rootsRemoved} stale root(s); ${r.objects.packsKept} pack(s) kept`,
      );
  },
};
