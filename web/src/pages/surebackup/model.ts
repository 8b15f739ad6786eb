/**
 * What the SureBackup pages read from the API (GET …/surebackup/reports,
 * …/reports/{id}, …/vms/{index}/screenshot and …/jobs/{job}/surebackup) and
 * the words they show for a report, a VM and a test.
 */
import { seg } from '../../api';
import { duration } from '../../format';

/** One VM of a report as the list shows it: its tests counted, not listed. */
export interface ReportVmSummary {
  job: string;
  point: string;
  name: string;
  ip: string;
  booted: boolean;
  seconds: number;
  passed: number;
  failed: number;
}

export interface ReportSummary {
  id: string;
  repo: string;
  startedAt: string;
  endedAt: string;
  ok: boolean;
  vms: ReportVmSummary[];
}

export interface ReportPage {
  reports: ReportSummary[];
  next: string | null;
}

export interface LabTest {
  /** heartbeat, ping, tcp:<port>, http:<url>, script:<file>, verify, screenshot */
  name: string;
  ok: boolean;
  detail: string;
  ms: number;
}

export interface ReportVm {
  job: string;
  point: string;
  name: string;
  ip: string;
  booted: boolean;
  seconds: number;
  note?: string;
  tests: LabTest[];
  screenshot: boolean;
}

export interface Report {
  id: string;
  repo: string;
  startedAt: string;
  endedAt: string;
  ok: boolean;
  reportDir: string;
  vms: ReportVm[];
}

/** A point's newest SureBackup result (the points page's mark). */
export interface TestedPoint {
  point: string;
  lastTestedAt: string;
  ok: boolean;
  reportId: string;
}

export const reportsPath = (repo: string): string => `/repositories/${seg(repo)}/surebackup/reports`;
export const reportPath = (repo: string, id: string): string => `${reportsPath(repo)}/${seg(id)}`;
export const testedPointsPath = (repo: string, job: string): string => `/repositories/${seg(repo)}/jobs/${seg(job)}/surebackup`;

/**
 * The screenshot's URL for an <img>: the browser fetches it itself with the
 * login cookie (same origin), so it is the API's full path, not one for api.get.
 */
export const screenshotUrl = (repo: string, id: string, index: number): string => `/api/v1${reportPath(repo, id)}/vms/${index}/screenshot`;

/** The console's hash links to the pages. */
export const reportsHref = (repo: string): string => `#/surebackup/${seg(repo)}`;
export const reportHref = (repo: string, id: string): string => `${reportsHref(repo)}/${seg(id)}`;

/** The result as a word: the badge's class and text (its colour is never the only sign). */
export const resultState = (ok: boolean): 'ok' | 'failed' => (ok ? 'ok' : 'failed');

export function runTime(r: { startedAt: string; endedAt: string }): string {
  const ms = Date.parse(r.endedAt) - Date.parse(r.startedAt);
  return Number.isFinite(ms) ? duration(ms) : '—';
}

/** How a VM's boot went: `booted in 8.2 s` or `did not boot (gave up after 300 s)`. */
export function bootText(vm: { booted: boolean; seconds: number }): string {
  const s = duration(vm.seconds * 1000);
  return vm.booted ? `booted in ${s}` : `did not boot (gave up after ${s})`;
}

/** One VM of the list in words: `web: booted in 8.2 s, 5 passed, 1 failed`. */
export function vmLine(vm: ReportVmSummary): string {
  return `${vm.name}: ${bootText(vm)}, ${vm.passed} passed, ${vm.failed} failed`;
}

/** A report's tests counted over all its VMs. */
export function counts(r: Report): { passed: number; failed: number } {
  let passed = 0;
  let failed = 0;
  for (const vm of r.vms)
    for (const t of vm.tests) {
      if (t.ok) passed++;
      else failed++;
    }
  return { passed, failed };
}
