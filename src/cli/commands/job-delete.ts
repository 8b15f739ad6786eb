import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, WAIT_OPTION, requireString } from '../command.js';

export const jobDelete: Command = {
  name: 'job delete',
  usage: 'job delete <job> --repo <dir> [--with-points] [--wait] [--json]',
  summary: 'delete a job (its restore points only with --with-points)',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    'with-points': { type: 'boolean', description: "delete the job's restore points and backup files too", defaultText: 'refuse while the job has points' },
    wait: WAIT_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const name = ctx.args[0]!;
    const r = await ctx.service.deleteJob(requireString(ctx, 'repo'), name, {
      withPoints: ctx.values['with-points'] === true,
      waitMs: ctx.values['wait'] === true ? 6 * 3600 * 1000 : 0,
    });
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify({ job: name, ...r }));
      return;
    }
    ctx.out(`deleted job ${name}${r.filesDeleted > 0 ? ` with ${r.pointsDeleted} restore point(s) in ${r.filesDeleted} backup file(s)` : ''}`);
  },
};
