import type { BackupMethod, JobDefinition } from './job.js';

/**
 * The method `job create` picks when --method is not given, so that a job
 * made with the defaults never grows without bound: with a full day scheduled
 * (--active-full or --synthetic-full), forward incremental, whose scheduled
 * fulls start new chains and whose old chains are then deleted whole; with
 * none, forever forward incremental, which merges its oldest increment into
 * the full once a point leaves retention. (Forward incremental with no full
 * day makes one chain forever, and retention never deletes the newest chain.)
 */
export function defaultMethod(activeFullDays: readonly string[], syntheticFullDays: readonly string[]): BackupMethod {
  return activeFullDays.length > 0 || syntheticFullDays.length > 0 ? 'forward' : 'forever';
}

/**
 * What is wrong with a job's retention that the settings alone show: today
 * one case, a configuration whose retention can never delete anything.
 * `job create` prints these (and lists them in --json); they do not refuse
 * the job, since keeping everything can be what the user wants.
 */
export function retentionWarnings(job: Pick<JobDefinition, 'method' | 'activeFullDays' | 'syntheticFullDays' | 'gfs'>): string[] {
  const warnings: string[] = [];
  const fullDays = job.activeFullDays.length + (job.syntheticFullDays?.length ?? 0);
  // With GFS, the first run of each GFS period makes a synthetic full (the backup run's rule), so chains end.
  const gfs = job.gfs !== undefined && job.gfs.weekly + job.gfs.monthly + job.gfs.yearly > 0;
  if (job.method === 'forward' && fullDays === 0 && !gfs)
    warnings.push(
      'retention can never delete anything: forward incremental with no --active-full or --synthetic-full day keeps one chain forever, and retention deletes only whole older chains; add --synthetic-full sat (or --active-full <weekday>), or use --method forever',
    );
  return warnings;
}
