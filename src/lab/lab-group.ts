import { resolve } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { LabVmSpec } from './types.js';

/** Seconds a lab VM has to pass its heartbeat unless --timeout says otherwise (`surebackup run`, SureBackup jobs, `sandbox start`). */
export const DEFAULT_BOOT_TIMEOUT_S = 300;

/**
 * An application group as `surebackup run` and SureBackup jobs take it: the
 * texts of --vm, --wait-for, --port, --http and --script (a SureBackup job
 * stores them as given, so it is checked by the same rules at each run).
 */
export interface LabGroupText {
  /** `<job>` (its latest point) or `<job>@<point id>`, in boot order. */
  readonly vms: readonly string[];
  readonly waitFor?: readonly string[] | undefined;
  /** `<job>:<port>`. */
  readonly ports?: readonly string[] | undefined;
  /** `<job>:<url>`. */
  readonly http?: readonly string[] | undefined;
  /** Paths of scripts run for every VM (made absolute from the current folder). */
  readonly scripts?: readonly string[] | undefined;
  readonly bootTimeoutS?: number | undefined;
  readonly serialPattern?: string | undefined;
}

/** One --vm: its job, and its point ("latest" when none was given: `pinned` false). */
export function parseVmText(t: string): { job: string; point: string; pinned: boolean } {
  const at = t.indexOf('@');
  const job = at < 0 ? t : t.slice(0, at);
  const point = at < 0 ? 'latest' : t.slice(at + 1);
  if (job === '' || point === '') throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--vm "${t}": give <job> or <job>@<point>`);
  return { job, point, pinned: at >= 0 };
}

/** Checks --timeout and --serial-pattern's values (the CLI's flags and a stored SureBackup job's fields). */
export function checkBootSettings(bootTimeoutS: number, serialPattern: string | undefined, what = '--timeout'): void {
  if (!Number.isFinite(bootTimeoutS) || bootTimeoutS <= 0)
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${what} must be a positive number of seconds, not "${bootTimeoutS}"`);
  if (serialPattern !== undefined) {
    try {
      new RegExp(serialPattern);
    } catch (err) {
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--serial-pattern is not a regular expression: ${(err as Error).message}`);
    }
  }
}

/** The group's VMs in boot order, each with its tests; LFB_ERR_USAGE without a VM, LFB_ERR_INVALID_ARGUMENT for a flag that does not fit. */
export function parseLabGroup(g: LabGroupText): LabVmSpec[] {
  if (g.vms.length === 0) throw new LifeboatError('LFB_ERR_USAGE', '--vm <job>[@<point>] is required (once per VM of the group)');
  const timeout = g.bootTimeoutS ?? DEFAULT_BOOT_TIMEOUT_S;
  checkBootSettings(timeout, g.serialPattern);
  const group = g.vms.map(parseVmText);
  const jobs = new Set(group.map((v) => v.job));
  const byJob = (flag: string, text: string): [string, string] => {
    const i = text.indexOf(':');
    const job = text.slice(0, i);
    if (i <= 0 || i === text.length - 1) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--${flag} "${text}": give <job>:<value>`);
    if (!jobs.has(job)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--${flag} "${text}": ${job} is not a --vm of the group`);
    return [job, text.slice(i + 1)];
  };
  const ports = (g.ports ?? []).map((t) => {
    const [job, p] = byJob('port', t);
    if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535)
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--port "${t}": ${p} is not a TCP port`);
    return { job, port: Number(p) };
  });
  const urls = (g.http ?? []).map((t) => {
    const [job, url] = byJob('http', t);
    if (!/^https?:\/\//.test(url)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--http "${t}": the URL must start with http:// or https://`);
    return { job, url };
  });
  const waitFor = new Set(g.waitFor ?? []);
  for (const w of waitFor) if (!jobs.has(w)) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--wait-for ${w}: not a --vm of the group`);
  const scripts = (g.scripts ?? []).map((f) => resolve(f));
  return group.map((v) => ({
    job: v.job,
    point: v.point,
    bootTimeoutS: timeout,
    ...(g.serialPattern !== undefined ? { serialPattern: g.serialPattern } : {}),
    ports: ports.filter((p) => p.job === v.job).map((p) => p.port),
    urls: urls.filter((u) => u.job === v.job).map((u) => u.url),
    scripts,
    waitForIt: waitFor.has(v.job),
  }));
}
