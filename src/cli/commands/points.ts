import { formatBytes } from '../../core/units.js';
import type { Command } from '../command.js';
import { requireString } from '../command.js';

export const points: Command = {
  name: 'points',
  usage: 'points <job> --repo <dir> [--json]',
  summary: 'list restore points',
  positionals: ['job'],
  options: { repo: { type: 'string' }, json: { type: 'boolean' } },
  async run(ctx) {
    const { points: list, state } = await ctx.service.points(requireString(ctx, 'repo'), ctx.args[0]!);
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify(list, null, 2));
    } else {
      ctx.out(['ID'.padEnd(14), 'CREATED'.padEnd(25), 'KIND'.padEnd(10), 'SIZE'.padEnd(10), 'FILE'].join(''));
      for (const p of list) {
        ctx.out([p.id.padEnd(14), p.createdAt.padEnd(25), p.kind.padEnd(10), formatBytes(p.diskSizes.reduce((a, b) => a + b, 0)).padEnd(10), p.file].join(''));
      }
    }
    for (const d of state.damaged) ctx.progress(`warning: ${d.message} [${d.code}]`);
    for (const o of state.orphans) ctx.progress(`warning: ${o} does not link to a complete chain; its point is not restorable`);
  },
};
