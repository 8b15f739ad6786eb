import { formatBytes } from '../../core/units.js';
import { DEFAULT_RETRIES, DEFAULT_RETRY_DELAY } from '../../core/schedule-text.js';
import type { JobDefinition } from '../../repository/index.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, requireString } from '../command.js';

/** A job's settings as people read them, one [label, value] per setting `job create` and `job set` take. */
export function describeJob(job: JobDefinition): [string, string][] {
  const gfs = job.gfs ? Object.entries(job.gfs).filter(([, n]) => n > 0) : [];
  return [
    ['disks', job.disks.join(', ')],
    ['method', `${job.method} incremental`],
    ['retention', job.retainDays === undefined ? `${job.retainPoints} points` : `${job.retainDays} days (at least 3 points)`],
    ['active full', job.activeFullDays.length > 0 ? job.activeFullDays.join(',') : 'none'],
    [
      'synthetic full',
      job.syntheticFullDays?.length
        ? `${job.syntheticFullDays.join(',')}${job.transformToRollbacks ? ', older chains transformed into rollbacks' : ''}`
        : 'none',
    ],
    ['gfs', gfs.length > 0 ? gfs.map(([k, n]) => `${k}=${n}`).join(',') : 'none'],
    ['changed-block tracking', job.cbt ? 'on' : 'off'],
    ['disk format', job.diskFormat ?? 'detected'],
    ['vm config', job.vm ? JSON.stringify(job.vm) : 'from the source at each backup'],
    ['schedule', job.schedule ?? 'none (runs only when asked)'],
    ['window', job.window ?? 'any time'],
    ['retries', `${job.retries ?? DEFAULT_RETRIES}, ${job.retryDelay ?? DEFAULT_RETRY_DELAY} apart`],
    ['after', job.after === undefined ? 'no other job' : `job ${job.after} succeeds`],
    ['enabled', job.disabled === true ? 'no (the server starts no run by itself)' : 'yes'],
    ['webhook', job.webhook ?? 'none'],
    ['mover', job.mover ?? 'the server'],
  ];
}

export const jobShow: Command = {
  name: 'job show',
  usage: 'job show <job> --repo <dir> [--json]',
  summary: "show a job's settings",
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const { job, points, damagedFiles, nextRunAt, timeZone } = await ctx.service.showJob(requireString(ctx, 'repo'), ctx.args[0]!);
    if (ctx.values['json'] === true) {
      // The retry settings as they apply (job.json leaves defaults out); nextRunAt is null without an enabled schedule.
      const retries = { retries: job.retries ?? DEFAULT_RETRIES, retryDelay: job.retryDelay ?? DEFAULT_RETRY_DELAY };
      ctx.out(JSON.stringify({ ...job, ...retries, points, damagedFiles, nextRunAt, timeZone }));
      return;
    }
    const rows: [string, string][] = [
      ...describeJob(job),
      ['block size', formatBytes(job.blockSize)],
      ['compression', job.compression],
      ['created', job.createdAt],
      ['id', job.jobId],
      [
        'next run',
        nextRunAt !== null
          ? `${nextRunAt} (schedule in ${timeZone})`
          : job.schedule === undefined
            ? 'none (no schedule)'
            : job.disabled === true
              ? 'none (disabled)'
              : 'none (the schedule fires no more)',
      ],
      ['restore points', `${points}${damagedFiles > 0 ? ` (${damagedFiles} damaged file(s): see \`lifeboat verify\`)` : ''}`],
    ];
    const width = Math.max(...rows.map(([label]) => label.length));
    ctx.out(`job ${job.name}`);
    for (const [label, value] of rows) ctx.out(`  ${`${label}:`.padEnd(width + 1)} ${value}`);
  },
};
