import type { ControlLabReports, HandedLabReport } from '../app/control-lab-reports.js';
import type { Catalog, LabReportRecord, LabVmRecord } from '../catalog/catalog.js';

/** A VM's part of a report without its screenshot, field by field (what the catalog keeps and the API shows of it). */
export function vmResults(v: Omit<LabVmRecord, 'screenshot'>): Omit<LabVmRecord, 'screenshot'> {
  return {
    job: v.job,
    point: v.point,
    name: v.name,
    ip: v.ip,
    booted: v.booted,
    seconds: v.seconds,
    ...(v.note !== undefined ? { note: v.note } : {}),
    tests: v.tests.map((t) => ({ name: t.name, ok: t.ok, detail: t.detail, ms: t.ms })),
  };
}

/** A report as the catalog records it; `runId` links it to the SureBackup job's run that made it. */
function reportRecord(repo: string, report: HandedLabReport, runId?: number): LabReportRecord {
  return {
    repo,
    id: report.id,
    startedAt: report.startedAt,
    endedAt: report.endedAt,
    ok: report.ok,
    reportDir: report.reportDir,
    vms: report.vms.map((v) => ({ ...vmResults(v), ...(v.screenshot !== undefined ? { screenshot: v.screenshot } : {}) })),
    ...(runId !== undefined ? { runId } : {}),
  };
}

/**
 * The control API's SureBackup reports (src/app/control-lab-reports.ts) over
 * the catalog: the report a `surebackup run` hands over at its end is
 * recorded for the repository this server serves, and the HTTP API and the
 * console read it from there.
 */
export function labReportsInCatalog(catalog: Catalog, repo: string): ControlLabReports {
  return {
    async record(report: HandedLabReport) {
      await catalog.recordLabReport(reportRecord(repo, report));
      return { id: report.id };
    },
  };
}

/** The report of a SureBackup job's run, recorded as `surebackup run`'s are, with the run's id. */
export async function recordRunReport(catalog: Catalog, repo: string, report: HandedLabReport, runId: number): Promise<void> {
  await catalog.recordLabReport(reportRecord(repo, report, runId));
}
