/** The SureBackup reports a catalog records (see Catalog in catalog.ts). */

/** One test of a lab VM in a SureBackup report. */
export interface LabTestRecord {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
  readonly ms: number;
}

/** One VM of a SureBackup report. */
export interface LabVmRecord {
  readonly job: string;
  /** The point it booted (a point id; the asked-for text, e.g. "latest", when no session started). */
  readonly point: string;
  readonly name: string;
  readonly ip: string;
  readonly booted: boolean;
  readonly seconds: number;
  readonly note?: string;
  readonly tests: readonly LabTestRecord[];
  /** The PNG's path as the run wrote it (the API serves it only from inside the report's folder). */
  readonly screenshot?: string;
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
