import { formatBytes } from '../../core/units.js';
import { LifeboatError } from '../../core/errors.js';
import { locationText } from '../../repository/location.js';
import {
  DEFAULT_TIER_SCHEDULE,
  capacityTierState,
  clearCapacityTier,
  runCapacityTier,
  setCapacityTier,
  type CapacityTierConfig,
} from '../../app/capacity-tier.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, WAIT_OPTION, optionalString, requireString } from '../command.js';

function describeTier(t: CapacityTierConfig): [string, string][] {
  return [
    ['capacity extent', locationText(t.location)],
    ['move', t.moveAfterDays === undefined ? 'never' : `chains whose newest point is ${t.moveAfterDays} day(s) old, and sealed GFS fulls`],
    ['copy new files', t.copyNew ? 'yes' : 'no'],
    ['schedule', `${t.schedule ?? DEFAULT_TIER_SCHEDULE}${t.schedule === undefined ? ' (default)' : ''}`],
  ];
}

function printRows(out: (line: string) => void, rows: [string, string][]): void {
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) out(`${k.padEnd(width)}  ${v}`);
}

export const tierSet: Command = {
  name: 'tier set',
  usage: 'tier set --repo <dir> --capacity s3://<bucket>/<prefix> [--move-after-days N] [--copy-new | --no-copy-new] [--schedule <cron>] [--json]',
  summary: 'give a repository a capacity tier on object storage (a scale-out repository), or change it',
  positionals: [],
  options: {
    repo: REPO_OPTION,
    capacity: {
      type: 'string',
      description: 'the capacity extent: s3://bucket/prefix (made if missing; endpoint and keys from the AWS environment), or a folder',
    },
    'move-after-days': {
      type: 'string',
      description:
        'move chains whose newest point is this many days old (and a newer chain exists), and sealed GFS fulls: copied, read back and checked, then freed here',
      defaultText: 'never moved',
    },
    'copy-new': {
      type: 'boolean',
      description: 'copy every backup file to the capacity tier as the run after it is written (the local file stays)',
      defaultText: 'no',
    },
    'no-copy-new': { type: 'boolean', description: 'stop copying new backup files', defaultText: '' },
    schedule: { type: 'string', description: 'when `lifeboat serve` runs the tier (cron)', defaultText: DEFAULT_TIER_SCHEDULE },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const days = optionalString(ctx, 'move-after-days');
    if (days !== undefined && !/^\d+$/.test(days)) throw new LifeboatError('LFB_ERR_USAGE', `--move-after-days must be a whole number of days, not "${days}"`);
    if (ctx.values['copy-new'] === true && ctx.values['no-copy-new'] === true)
      throw new LifeboatError('LFB_ERR_USAGE', '--copy-new and --no-copy-new exclude each other');
    const t = await setCapacityTier(requireString(ctx, 'repo'), {
      capacity: requireString(ctx, 'capacity'),
      moveAfterDays: days === undefined ? undefined : Number(days),
      copyNew: ctx.values['copy-new'] === true ? true : ctx.values['no-copy-new'] === true ? false : undefined,
      schedule: optionalString(ctx, 'schedule'),
    });
    if (ctx.values['json'] === true) ctx.out(JSON.stringify(t));
    else printRows(ctx.out, describeTier(t));
  },
};

export const tierShow: Command = {
  name: 'tier show',
  usage: 'tier show --repo <dir> [--json]',
  summary: "the capacity tier's setting, and where each backup file is (local, capacity or both)",
  positionals: [],
  options: { repo: REPO_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const s = await capacityTierState(requireString(ctx, 'repo'));
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(s, null, 2));
    printRows(ctx.out, describeTier(s.tier));
    for (const j of s.jobs) {
      const sum = (place: string): number => j.files.filter((f) => f.place === place).reduce((a, f) => a + f.bytes, 0);
      ctx.out('');
      ctx.out(`job ${j.job}: local ${formatBytes(sum('local'))}, capacity ${formatBytes(sum('capacity'))}, both ${formatBytes(sum('both'))}`);
      for (const f of j.files)
        ctx.out(
          `  ${f.place.padEnd(8)}  ${formatBytes(f.bytes).padStart(10)}  ${f.file}${f.stale ? '  (changed since its copy: copied again at the next run)' : ''}`,
        );
    }
  },
};

export const tierRun: Command = {
  name: 'tier run',
  usage: 'tier run --repo <dir> [--job <job>] [--wait] [--json]',
  summary: 'copy and move backup files to the capacity tier now, as its setting says',
  positionals: [],
  options: { repo: REPO_OPTION, job: { type: 'string', description: 'only this job', defaultText: 'every job' }, wait: WAIT_OPTION, json: JSON_OPTION },
  async run(ctx) {
    const r = await runCapacityTier(requireString(ctx, 'repo'), ctx.service.clock, {
      job: optionalString(ctx, 'job'),
      waitMs: ctx.values['wait'] === true ? 6 * 3600 * 1000 : 0,
      signal: ctx.signal,
      onMismatch: (job, file) => {
        process.stderr.write(`lifeboat: warning: the capacity tier's copy of ${job}/${file} no longer matched its record; it is copied again\n`);
      },
      onProgress: (p) =>
        ctx.progress(`${p.job} ${p.file}: ${p.step === 'copy' ? 'copying' : 'checking the copy'} ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)}`),
    });
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(r, null, 2));
    for (const f of r.copied) ctx.out(`copied  ${f.job}/${f.file} (${formatBytes(f.bytes)}), read back and checked`);
    for (const f of r.freed) ctx.out(`moved   ${f.job}/${f.file} (${formatBytes(f.bytes)} freed here)`);
    ctx.out(`${r.copied.length} file(s) copied (${formatBytes(r.bytesCopied)}), ${r.freed.length} moved (${formatBytes(r.bytesFreed)} freed)`);
  },
};

export const tierClear: Command = {
  name: 'tier clear',
  usage: 'tier clear --repo <dir>',
  summary: 'drop the capacity tier (refused while backup files live only there; its copies stay on the object store)',
  positionals: [],
  options: { repo: REPO_OPTION },
  async run(ctx) {
    await clearCapacityTier(requireString(ctx, 'repo'));
    ctx.out('capacity tier dropped; the copies on the object store stay');
  },
};
