/**
 * SureBackup reports from the catalog (recorded when `lifeboat surebackup
 * run` hands its report to the server): the list with paging, one report
 * whole, a VM's screenshot, and each point's newest result for a job.
 *
 * A screenshot is served only from inside its report's folder, and only
 * when that folder is inside the repository: the report names the file, and
 * a report is data, so a path it gives elsewhere (or a link that leads
 * elsewhere) is never opened.
 */
import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { LabReportRecord, LabVmRecord } from '../../catalog/catalog.js';
import { LifeboatError } from '../../core/errors.js';
import type { ApiServer } from './api.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { vmResults } from '../lab-reports.js';
import { ERROR_RESPONSES, JobParams, RepoParams } from './schemas.js';
import { PNG_RESPONSE, PointResults, ReportDetail, ReportListQuery, ReportPage, ReportParams, ScreenshotParams } from './surebackup-schemas.js';

/** A lab screenshot is a few hundred KiB; a file far larger is not one. */
const MAX_SCREENSHOT_BYTES = 32 * 1024 * 1024;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** `inner` is a path strictly below `outer`. */
function below(outer: string, inner: string): boolean {
  const rel = relative(outer, inner);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/** As the report names it: a .png directly in the report's folder, and that folder inside the repository. */
function servablePath(root: string, report: LabReportRecord, vm: LabVmRecord): string | undefined {
  if (vm.screenshot === undefined) return undefined;
  const dir = resolve(report.reportDir);
  const file = resolve(vm.screenshot);
  return below(root, dir) && dirname(file) === dir && file.endsWith('.png') ? file : undefined;
}

function noScreenshot(report: LabReportRecord, index: number, why: string): LifeboatError {
  return new LifeboatError('LFB_ERR_SCREENSHOT_NOT_FOUND', `VM ${index} of SureBackup report ${report.id} has no screenshot to serve: ${why}`, {
    details: { report: report.id, vm: index },
  });
}

/** The PNG's bytes, checked again on the real paths (no link leads out of the folder) and by its signature. */
async function readScreenshot(root: string, report: LabReportRecord, index: number): Promise<Buffer> {
  const vm = report.vms[index];
  if (vm === undefined)
    throw new LifeboatError('LFB_ERR_REPORT_NOT_FOUND', `SureBackup report ${report.id} has ${report.vms.length} VM(s); there is no VM ${index}`, {
      details: { report: report.id, vm: index },
    });
  if (vm.screenshot === undefined) throw noScreenshot(report, index, 'none was taken');
  const file = servablePath(root, report, vm);
  if (file === undefined) throw noScreenshot(report, index, "its file is not in the report's folder inside the repository");
  let real: { root: string; dir: string; file: string };
  try {
    real = { root: await realpath(root), dir: await realpath(dirname(file)), file: await realpath(file) };
  } catch {
    throw noScreenshot(report, index, 'its file is gone');
  }
  if (!below(real.root, real.dir) || dirname(real.file) !== real.dir) throw noScreenshot(report, index, 'a link leads out of the report folder');
  let fh;
  try {
    fh = await open(real.file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    throw noScreenshot(report, index, 'its file cannot be opened');
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > MAX_SCREENSHOT_BYTES) throw noScreenshot(report, index, 'its file is not a screenshot');
    const bytes = await fh.readFile();
    if (!bytes.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE)) throw noScreenshot(report, index, 'its file is not a PNG');
    return bytes;
  } finally {
    await fh.close();
  }
}

export function surebackupRoutes(app: ApiServer, ctx: ApiContext): void {
  const { catalog } = ctx.deps;
  const base = `${API_PREFIX}/repositories/:repo/surebackup/reports`;

  app.get(
    base,
    {
      schema: {
        summary: "The repository's SureBackup reports, newest first, each VM with its counts of passed and failed tests; page with before=<next>",
        tags: ['surebackup'],
        params: RepoParams,
        querystring: ReportListQuery,
        response: { 200: ReportPage, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      const q = request.query;
      const page = await catalog.listLabReports({ repo: root, limit: q.limit ?? 50, ...(q.before !== undefined ? { before: q.before } : {}) });
      return {
        reports: page.reports.map((r) => ({
          id: r.id,
          repo: request.params.repo,
          startedAt: r.startedAt,
          endedAt: r.endedAt,
          ok: r.ok,
          ...(r.runId !== undefined ? { runId: r.runId } : {}),
          vms: r.vms.map((v) => {
            const passed = v.tests.filter((t) => t.ok).length;
            return { job: v.job, point: v.point, name: v.name, ip: v.ip, booted: v.booted, seconds: v.seconds, passed, failed: v.tests.length - passed };
          }),
        })),
        next: page.next,
      };
    },
  );

  app.get(
    `${base}/:id`,
    {
      schema: {
        summary: 'One SureBackup report: each VM with its tests (name, ok, detail, ms) and whether its screenshot can be fetched',
        tags: ['surebackup'],
        params: ReportParams,
        response: { 200: ReportDetail, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      const r = await catalog.getLabReport(root, request.params.id);
      return {
        id: r.id,
        repo: request.params.repo,
        startedAt: r.startedAt,
        endedAt: r.endedAt,
        ok: r.ok,
        reportDir: r.reportDir,
        ...(r.runId !== undefined ? { runId: r.runId } : {}),
        vms: r.vms.map((v) => ({ ...vmResults(v), screenshot: servablePath(root, r, v) !== undefined })),
      };
    },
  );

  app.get(
    `${base}/:id/vms/:index/screenshot`,
    {
      schema: {
        summary: "A VM's screen at the end of the run, as PNG: only a file in the report's folder inside the repository is served",
        tags: ['surebackup'],
        params: ScreenshotParams,
        response: { ...PNG_RESPONSE, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const root = ctx.repoRoot(request.params.repo);
      const report = await catalog.getLabReport(root, request.params.id);
      const png = await readScreenshot(root, report, request.params.index);
      return reply.type('image/png').send(png);
    },
  );

  app.get(
    `${API_PREFIX}/repositories/:repo/jobs/:job/surebackup`,
    {
      schema: {
        summary: "Each of the job's points with its newest SureBackup result (for the points timeline)",
        tags: ['surebackup'],
        params: JobParams,
        response: { 200: PointResults, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const root = ctx.repoRoot(request.params.repo);
      return { points: [...(await catalog.latestLabResults(root, request.params.job))] };
    },
  );
}
