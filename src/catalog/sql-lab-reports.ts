/**
 * The statements of SqlCatalog for SureBackup reports (arguments already
 * checked by it; each runs on the database or inside the transaction it is
 * given).
 */
import type { Kysely } from 'kysely';
import { LifeboatError } from '../core/errors.js';
import type { LabPointResult, LabReportPage, LabReportRecord } from './catalog.js';
import * as rows from './rows.js';
import type { CatalogSchema } from './schema.js';

type Db = Kysely<CatalogSchema>;

export function reportNotFound(repo: string, id: string): LifeboatError {
  return new LifeboatError('LFB_ERR_REPORT_NOT_FOUND', `no SureBackup report ${JSON.stringify(id)} of ${repo} in the catalog`, {
    details: { repo, report: id },
  });
}

/** In a write transaction: the report replaces one of the same repository and id, with its VMs' results. */
export async function writeLabReport(trx: Db, report: LabReportRecord): Promise<void> {
  const old = await trx.selectFrom('lab_reports').select('seq').where('repo', '=', report.repo).where('id', '=', report.id).executeTakeFirst();
  if (old !== undefined) {
    await trx.deleteFrom('lab_vm_results').where('report_seq', '=', old.seq).execute();
    await trx.deleteFrom('lab_reports').where('seq', '=', old.seq).execute();
  }
  const made = await trx.insertInto('lab_reports').values(rows.labReportToRow(report)).returning('seq').executeTakeFirstOrThrow();
  const results = rows.labVmResultRows(report, made.seq);
  if (results.length > 0) await trx.insertInto('lab_vm_results').values(results).execute();
}

async function seqOf(db: Db, repo: string, id: string): Promise<number> {
  const found = await db.selectFrom('lab_reports').select('seq').where('repo', '=', repo).where('id', '=', id).executeTakeFirst();
  if (found === undefined) throw reportNotFound(repo, id);
  return found.seq;
}

export async function labReportsOf(db: Db, repo: string, limit: number, before: string | undefined): Promise<LabReportPage> {
  let q = db.selectFrom('lab_reports').selectAll().where('repo', '=', repo);
  if (before !== undefined) q = q.where('seq', '<', await seqOf(db, repo, before));
  // One row more than the page tells whether another page follows.
  const found = await q
    .orderBy('seq', 'desc')
    .limit(limit + 1)
    .execute();
  const page = found.slice(0, limit).map(rows.labReportFromRow);
  return { reports: page, next: found.length > limit ? page[page.length - 1]!.id : null };
}

export async function labReportOf(db: Db, repo: string, id: string): Promise<LabReportRecord> {
  const row = await db.selectFrom('lab_reports').selectAll().where('repo', '=', repo).where('id', '=', id).executeTakeFirst();
  if (row === undefined) throw reportNotFound(repo, id);
  return rows.labReportFromRow(row);
}

/** Each point's newest result: the rows of the job newest first, the first report seen per point kept (its VMs of that point all passed, or not). */
export async function latestResultsOf(db: Db, repo: string, job: string): Promise<LabPointResult[]> {
  const found = await db
    .selectFrom('lab_vm_results')
    .innerJoin('lab_reports', 'lab_reports.seq', 'lab_vm_results.report_seq')
    .select(['lab_vm_results.point_id', 'lab_vm_results.ok', 'lab_vm_results.tested_at', 'lab_vm_results.report_seq', 'lab_reports.id'])
    .where('lab_vm_results.repo', '=', repo)
    .where('lab_vm_results.job', '=', job)
    .orderBy('lab_vm_results.report_seq', 'desc')
    .orderBy('lab_vm_results.vm')
    .execute();
  const byPoint = new Map<string, { seq: number; result: LabPointResult }>();
  for (const r of found) {
    const seen = byPoint.get(r.point_id);
    const ok = Number(r.ok) === 1;
    if (seen === undefined) byPoint.set(r.point_id, { seq: r.report_seq, result: { point: r.point_id, lastTestedAt: r.tested_at, ok, reportId: r.id } });
    else if (seen.seq === r.report_seq && !ok) seen.result = { ...seen.result, ok: false };
  }
  return [...byPoint.values()].map((v) => v.result);
}
