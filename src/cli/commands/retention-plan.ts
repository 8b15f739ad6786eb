import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, requireString } from '../command.js';

export const retentionPlan: Command = {
  name: 'retention plan',
  usage: 'retention plan <job> --repo <dir> [--json]',
  summary: 'show what retention would do now, changing nothing',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const plan = await ctx.service.retentionPlan(requireString(ctx, 'repo'), ctx.args[0]!);
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify(plan, null, 2));
      return;
    }
    if (plan.actions.length === 0) ctx.out('nothing to do');
    for (const a of plan.actions) {
      if (a.type === 'merge') ctx.out(`merge ${a.incrementPointId} into full ${a.fullPointId}: ${a.reason}`);
      else if (a.type === 'delete-rollback') ctx.out(`delete rollback ${a.pointId}: ${a.reason}`);
      else if (a.type === 'delete-increments') ctx.out(`delete increments ${a.pointIds.join(', ')} of chain ${a.chainId}: ${a.reason}`);
      else ctx.out(`delete chain ${a.chainId} (${a.pointIds.join(', ')}): ${a.reason}`);
    }
    for (const k of plan.kept) ctx.out(`keep ${k.id}: ${k.reason}`);
  },
};
