import { formatBytes } from '../../core/units.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, WAIT_OPTION, requireString } from '../command.js';

export const compact: Command = {
  name: 'compact',
  usage: 'compact <job> --repo <dir> [--wait] [--json]',
  summary: 'rewrite backup files that merges and reverse runs left with dead space, and report what was reclaimed',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    wait: WAIT_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const r = await ctx.service.compact(requireString(ctx, 'repo'), ctx.args[0]!, { waitMs: ctx.values['wait'] === true ? 6 * 3600 * 1000 : 0 });
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(r, null, 2));
    for (const f of r.files) ctx.out(`${f.file}: ${formatBytes(f.bytesBefore)} → ${formatBytes(f.bytesAfter)}`);
    ctx.out(r.files.length === 0 ? 'nothing to compact' : `reclaimed ${formatBytes(r.bytesReclaimed)} in ${r.files.length} file(s)`);
  },
};
