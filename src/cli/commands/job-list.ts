import type { Command } from '../command.js';
import { requireString } from '../command.js';

export const jobList: Command = {
  name: 'job list',
  usage: 'job list --repo <dir>',
  summary: 'list the jobs of a repository',
  positionals: [],
  options: { repo: { type: 'string', description: 'the repository folder', defaultText: '$LIFEBOAT_REPO' } },
  async run(ctx) {
    for (const name of await ctx.service.listJobs(requireString(ctx, 'repo'))) ctx.out(name);
  },
};
