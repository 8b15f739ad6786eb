import { formatBytes } from '../../core/units.js';
import { describeDamage } from '../../repository/index.js';
import type { Command } from '../command.js';
import { requireString } from '../command.js';

export const points: Command = {
  name: 'points',
  usage: 'points <job> --repo <dir> [--json]',
  summary: 'list restore points',
  positionals: ['job'],
  options: {
    repo: { type: 'string', description: 'the repository folder', defaultText: '$LIFEBOAT_REPO' },
    json: { type: 'boolean', description: 'print the result as JSON', defaultText: 'human-readable text' },
  },
  async run(ctx) {
    const { points: list, state } = await ctx.service.points(requireString(ctx, 'repo'), ctx.args[0]!);
    const rows = [
      ...list.map((p) => {
        const damage = state.damagedPoints.get(p.id);
        return damage
          ? {
              ...p,
              available: false as const,
              problem: describeDamage(damage),
              code: damage.files.length > 0 ? 'LFB_ERR_FILE_CORRUPT' : 'LFB_ERR_BLOCK_CORRUPT',
            }
          : { ...p, available: true as const };
      }),
      ...state.unavailable.map((u) => ({
        id: u.id,
        createdAt: u.createdAt,
        kind: u.kind,
        file: u.file,
        available: false as const,
        problem: u.problem,
        code: u.code,
      })),
    ].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify(rows, null, 2));
    } else {
      ctx.out(['ID'.padEnd(14), 'CREATED'.padEnd(26), 'KIND'.padEnd(11), 'SIZE'.padEnd(11), 'FILE'].join(''));
      for (const p of rows) {
        const size = 'diskSizes' in p ? formatBytes(p.diskSizes.reduce((a, b) => a + b, 0)) : '-';
        ctx.out([p.id.padEnd(14), p.createdAt.padEnd(26), p.kind.padEnd(11), size.padEnd(11), p.file, p.available ? '' : `  UNAVAILABLE [${p.code}]`].join(''));
      }
    }
    // Problems go to stderr too, on a terminal or not: a damaged backup must never go unnoticed.
    for (const u of rows) if (!u.available) process.stderr.write(`lifeboat: warning: point ${u.id} is not restorable: ${u.problem} [${u.code}]\n`);
  },
};
