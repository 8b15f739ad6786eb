import type { Command } from '../command.js';
import { REPO_OPTION, requireString } from '../command.js';

export const jobList: Command = {
  name: 'job list',
  usage: 'job list --repo <dir> [--json]',
  summary: 'list the jobs of a repository',
  positionals: [],
  options: {
    repo: REPO_OPTION,
    json: { type: 'boolean', description: 'print each job with its method, disks and number of points as JSON', defaultText: 'one name a line' },
  },
  async run(ctx) {
    const repo = requireString(ctx, 'repo');
    const names = await ctx.service.listJobs(repo);
    if (ctx.values['json'] !== true) {
      for (const name of names) ctx.out(name);
      return;
    }
    const jobs = [];
    for (const name of names) {
      const { job, points, damagedFiles } = await ctx.service.showJob(repo, name);
      jobs.push({ name, method: job.method, disks: job.disks, points, damagedFiles });
    }
    ctx.out(JSON.stringify(jobs, null, 2));
  },
};
