import { LifeboatError } from '../../core/errors.js';
import { BACKUP_METHODS, parseGfs, parseWeekdays, type BackupMethod } from '../../repository/job.js';
import { defaultMethod, retentionWarnings } from '../../repository/job-defaults.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, optionalString, requireString } from '../command.js';
import { SCHEDULE_OPTIONS, scheduleFlags } from './job-schedule-flags.js';

export const jobCreate: Command = {
  name: 'job create',
  usage:
    'job create <job> --repo <dir> --disk <path|nbd-uri> [--disk … ] [--method forward|forever|reverse] [--retain-points N | --retain-days N] [--active-full <weekday,…>] [--synthetic-full <weekday,…> [--transform-to-rollbacks]] [--gfs weekly=N,monthly=N,yearly=N] [--qmp <socket> --drive <node-name> …] [--cbt] [--disk-format raw|qcow2|vmdk|vhdx|vdi] [--vm-config <file>] [--schedule <cron>] [--window HH:MM-HH:MM] [--retries N] [--retry-delay <duration>] [--after <job>] [--disabled] [--json]',
  summary: 'define a job protecting one VM',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    disk: { type: 'string', multiple: true, description: 'a source disk: an image file, a block device or an nbd:// URI, once per disk' },
    method: {
      type: 'string',
      description: 'backup method: forward, forever or reverse (incremental)',
      defaultText: 'forward with --active-full or --synthetic-full, else forever',
    },
    'retain-points': { type: 'string', description: 'keep this many restore points', defaultText: '7' },
    'retain-days': { type: 'string', description: 'keep the points of this many days (at least 3 points) instead of a count', defaultText: 'count points' },
    'active-full': { type: 'string', description: 'weekdays of a full read of the source (e.g. sun or mon,thu)', defaultText: 'none' },
    'synthetic-full': {
      type: 'string',
      description: 'weekdays of a full built from stored blocks, without reading the source (forward only)',
      defaultText: 'none',
    },
    'transform-to-rollbacks': { type: 'boolean', description: 'with --synthetic-full: turn older chains into rollbacks to save space', defaultText: 'off' },
    gfs: { type: 'string', description: 'long-term fulls kept beyond retention: weekly=N,monthly=N,yearly=N', defaultText: 'none' },
    cbt: { type: 'boolean', description: 'changed-block tracking with QEMU dirty bitmaps (qcow2 or a running VM)', defaultText: 'off: compare block hashes' },
    qmp: { type: 'string', description: "a running VM's QMP monitor socket (with --drive)" },
    drive: { type: 'string', multiple: true, description: 'with --qmp: a node name of the VM to back up, once per disk' },
    'disk-format': { type: 'string', description: 'source format: raw, qcow2, vmdk, vhdx or vdi', defaultText: 'detected' },
    'vm-config': {
      type: 'string',
      description: 'JSON file of the VM settings (CPUs, memory, firmware) stored with each point',
      defaultText: 'from the source at each backup',
    },
    ...SCHEDULE_OPTIONS,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const activeFullDays = parseWeekdays(optionalString(ctx, 'active-full') ?? '', '--active-full');
    const syntheticFullDays = parseWeekdays(optionalString(ctx, 'synthetic-full') ?? '', '--synthetic-full');
    // No --method: a method whose retention bounds storage (see defaultMethod).
    const method = optionalString(ctx, 'method') ?? defaultMethod(activeFullDays, syntheticFullDays);
    if (!(BACKUP_METHODS as readonly string[]).includes(method))
      throw new LifeboatError('LFB_ERR_USAGE', `--method must be one of ${BACKUP_METHODS.join(', ')}`);
    const rp = optionalString(ctx, 'retain-points') ?? '7';
    if (!/^\d+$/.test(rp) || Number(rp) < 1) throw new LifeboatError('LFB_ERR_USAGE', `--retain-points must be a whole number ≥ 1, not "${rp}"`);
    const rd = optionalString(ctx, 'retain-days');
    if (rd !== undefined && optionalString(ctx, 'retain-points') !== undefined)
      throw new LifeboatError('LFB_ERR_USAGE', '--retain-points and --retain-days exclude each other');
    if (rd !== undefined && (!/^\d+$/.test(rd) || Number(rd) < 1))
      throw new LifeboatError('LFB_ERR_USAGE', `--retain-days must be a whole number ≥ 1, not "${rd}"`);
    const qmp = optionalString(ctx, 'qmp');
    const drives = (ctx.values['drive'] as string[] | undefined) ?? [];
    if ((qmp === undefined) !== (drives.length === 0))
      throw new LifeboatError('LFB_ERR_USAGE', '--qmp <monitor socket> and --drive <node-name> go together (a running VM)');
    const disks = (ctx.values['disk'] as string[] | undefined) ?? [];
    if (disks.length === 0 && drives.length === 0) throw new LifeboatError('LFB_ERR_USAGE', '--disk is required (once per disk), or --qmp with --drive');
    const job = await ctx.service.createJob(requireString(ctx, 'repo'), {
      name: ctx.args[0]!,
      disks,
      ...(qmp !== undefined ? { qmp, drives } : {}),
      method: method as BackupMethod,
      retainPoints: Number(rp),
      retainDays: rd === undefined ? undefined : Number(rd),
      activeFullDays,
      syntheticFullDays,
      transformToRollbacks: ctx.values['transform-to-rollbacks'] === true,
      cbt: ctx.values['cbt'] === true,
      diskFormat: optionalString(ctx, 'disk-format'),
      gfs: optionalString(ctx, 'gfs') === undefined ? undefined : parseGfs(optionalString(ctx, 'gfs')!),
      vmConfigFile: optionalString(ctx, 'vm-config'),
      ...scheduleFlags(ctx),
    });
    const warnings = retentionWarnings(job);
    for (const w of warnings) process.stderr.write(`lifeboat: warning: ${w}\n`);
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify({ ...job, warnings }, null, 2));
      return;
    }
    ctx.out(
      `created job ${job.name}: ${job.disks.length} disk(s), ${job.method} incremental, keep ${job.retainDays === undefined ? `${job.retainPoints} points` : `${job.retainDays} days (at least 3 points)`}${job.activeFullDays.length ? `, active full on ${job.activeFullDays.join(',')}` : ''}${job.syntheticFullDays?.length ? `, synthetic full on ${job.syntheticFullDays.join(',')}` : ''}${job.transformToRollbacks ? ', older chains transformed into rollbacks' : ''}${job.cbt ? ', changed-block tracking' : ''}${job.schedule !== undefined ? `, scheduled "${job.schedule}"` : ''}${job.window !== undefined ? ` in ${job.window}` : ''}${job.after !== undefined ? `, after job ${job.after}` : ''}${job.disabled ? ', disabled' : ''}`,
    );
  },
};
