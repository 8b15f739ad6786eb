import type { ControlLabReports, HandedLabReport } from '../app/control-lab-reports.js';
import type { Catalog } from '../catalog/catalog.js';

/**
 * The control API's SureBackup reports (src/app/control-lab-reports.ts) over
 * the catalog: the report a `surebackup run` hands over at its end is
 * recorded for the repository this server serves, and the HTTP API and the
 * console read it from there.
 */
export function labReportsInCatalog(catalog: Catalog, repo: string): ControlLabReports {
  return {
    async record(report: HandedLabReport) {
      await catalog.recordLabReport({
        repo,
        id: report.id,
        startedAt: report.startedAt,
        endedAt: report.endedAt,
        ok: report.ok,
        reportDir: report.reportDir,
        vms: report.vms.map((v) => ({
          job: v.job,
          point: v.point,
          name: v.name,
          ip: v.ip,
          booted: v.booted,
          seconds: v.seconds,
          ...(v.note !== undefined ? { note: v.note } : {}),
          tests: v.tests.map((t) => ({ name: t.name, ok: t.ok, detail: t.detail, ms: t.ms })),
          ...(v.screenshot !== undefined ? { screenshot: v.screenshot } : {}),
        })),
      });
      return { id: report.id };
    },
  };
}
