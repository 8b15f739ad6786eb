/** The SureBackup reports a catalog records (see Catalog in catalog.ts). */
import type { LabTestResult, LabVmReport } from '../core/lab-report.js';

/** One test of a lab VM in a SureBackup report. */
export type LabTestRecord = LabTestResult;

/** One VM of a SureBackup report; the API serves its screenshot only from inside the report's folder. */
export interface LabVmRecord extends LabVmReport {
  readonly note?: string;
}

/** A SureBackup run's report as the server recorded it. */
export interface LabReportRecord {
  /** The repository's root folder. */
  readonly repo: string;
  /** The lab's id: unique within the repository (a report recorded again under its id replaces the first). */
  readonly id: string;
  readonly startedAt: string;
  readonly endedAt: string;
  readonly ok: boolean;
  /** The folder of report.json and the screenshots. */
  readonly reportDir: string;
  readonly vms: readonly LabVmRecord[];
  /** The SureBackup job's run that made it (absent for a `surebackup run` of the CLI). */
  readonly runId?: number;
}

export interface LabReportFilter {
  readonly repo: string;
  /** Newest recorded first; at most this many (default 50, at most 1000). */
  readonly limit?: number;
  /** Reports recorded before the one with this id (the `next` of the previous page). */
  readonly before?: string;
}

export interface LabReportPage {
  readonly reports: readonly LabReportRecord[];
  /** Pass as `before` for the next page; null when this was the last. */
  readonly next: string | null;
}

/** A point's newest SureBackup result. */
export interface LabPointResult {
  readonly point: string;
  /** The report's endedAt. */
  readonly lastTestedAt: string;
  /** Every VM of that report booted from the point passed every test. */
  readonly ok: boolean;
  readonly reportId: string;
}
