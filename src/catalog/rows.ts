/**
 * Rows ↔ records: the one place that knows how catalog.ts's records are
 * spelled in the tables (snake_case columns, JSON text, nullable columns).
 */
import type { Selectable } from 'kysely';
import { LifeboatError } from '../core/errors.js';
import type {
  ChangeMethod,
  JobReadRecord,
  JobRecord,
  LabReportRecord,
  LabVmRecord,
  LogLine,
  PointRecord,
  RunKind,
  RunRecord,
  RunState,
  RunTrigger,
  RunUpdate,
  TaskRecord,
  TokenRecord,
  UserRecord,
  UsageSample,
  UserRole,
  WebSessionRecord,
} from './catalog.js';
import type {
  ApiTokensTable,
  JobReadsTable,
  JobsTable,
  LabReportsTable,
  LabVmResultsTable,
  UsageSamplesTable,
  LogLinesTable,
  PointsTable,
  RunsTable,
  TasksTable,
  UsersTable,
  WebSessionsTable,
} from './schema.js';

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new LifeboatError('LFB_ERR_CATALOG', `catalog: the stored ${what} is not JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** Each RunRecord field with its column, in RunRecord's order (a listing as JSON text names them so). */
export const RUN_FIELDS = [
  ['id', 'id'],
  ['repo', 'repo'],
  ['job', 'job'],
  ['kind', 'kind'],
  ['trigger', 'trigger'],
  ['attempt', 'attempt'],
  ['retryOf', 'retry_of'],
  ['state', 'state'],
  ['queuedAt', 'queued_at'],
  ['startedAt', 'started_at'],
  ['endedAt', 'ended_at'],
  ['bytesRead', 'bytes_read'],
  ['bytesStored', 'bytes_stored'],
  ['steps', 'steps'],
  ['errorCode', 'error_code'],
  ['errorMessage', 'error_message'],
  ['pointId', 'point_id'],
  ['changeMethod', 'change_method'],
  ['changeReason', 'change_reason'],
  ['reportId', 'report_id'],
] as const satisfies readonly (readonly [keyof RunRecord, keyof RunsTable])[];
/** Fails to compile while a RunRecord field is missing from RUN_FIELDS. */
const everyRunField: [Exclude<keyof RunRecord, (typeof RUN_FIELDS)[number][0]>] extends [never] ? true : never = true;
void everyRunField;

/** The runs table's columns, in the order runFromColumns reads them. */
export const RUN_COLUMNS = RUN_FIELDS.map(([, column]) => column);

/** A run from its columns in RUN_COLUMNS order (a listing's rows as arrays). */
export function runFromColumns(c: readonly unknown[]): RunRecord {
  return {
    id: c[0] as number,
    repo: c[1] as string,
    job: c[2] as string,
    kind: c[3] as RunKind,
    trigger: c[4] as RunTrigger,
    attempt: c[5] as number,
    retryOf: c[6] as number | null,
    state: c[7] as RunState,
    queuedAt: c[8] as string,
    startedAt: c[9] as string | null,
    endedAt: c[10] as string | null,
    bytesRead: c[11] as number,
    bytesStored: c[12] as number,
    steps: parseJson<Record<string, number>>(c[13] as string, `steps of run ${String(c[0])}`),
    errorCode: c[14] as string | null,
    errorMessage: c[15] as string | null,
    pointId: c[16] as string | null,
    changeMethod: c[17] as ChangeMethod | null,
    changeReason: c[18] as string | null,
    reportId: c[19] as string | null,
  };
}

/** A run from a row object: the same mapping, so a listing and a single read cannot drift apart. */
export function runFromRow(r: Selectable<RunsTable>): RunRecord {
  return runFromColumns(RUN_COLUMNS.map((k) => r[k]));
}

/** The columns a RunUpdate changes (only the fields it has). */
export function runUpdateColumns(change: RunUpdate): Partial<Omit<RunsTable, 'id' | 'kind'>> {
  const columns: Partial<Omit<RunsTable, 'id' | 'kind'>> = {};
  if (change.state !== undefined) columns.state = change.state;
  if (change.startedAt !== undefined) columns.started_at = change.startedAt;
  if (change.endedAt !== undefined) columns.ended_at = change.endedAt;
  if (change.bytesRead !== undefined) columns.bytes_read = change.bytesRead;
  if (change.bytesStored !== undefined) columns.bytes_stored = change.bytesStored;
  if (change.steps !== undefined) columns.steps = JSON.stringify(change.steps);
  if (change.errorCode !== undefined) columns.error_code = change.errorCode;
  if (change.errorMessage !== undefined) columns.error_message = change.errorMessage;
  if (change.pointId !== undefined) columns.point_id = change.pointId;
  if (change.changeMethod !== undefined) columns.change_method = change.changeMethod;
  if (change.changeReason !== undefined) columns.change_reason = change.changeReason;
  if (change.reportId !== undefined) columns.report_id = change.reportId;
  return columns;
}

export function taskToRow(t: TaskRecord): TasksTable {
  return {
    run_id: t.runId,
    disk: t.disk,
    disk_name: t.diskName,
    state: t.state,
    started_at: t.startedAt,
    ended_at: t.endedAt,
    bytes_read: t.bytesRead,
    bytes_stored: t.bytesStored,
  };
}

export function taskFromRow(r: Selectable<TasksTable>): TaskRecord {
  return {
    runId: r.run_id,
    disk: r.disk,
    diskName: r.disk_name,
    state: r.state as RunState,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    bytesRead: r.bytes_read,
    bytesStored: r.bytes_stored,
  };
}

export function logLineFromRow(r: Selectable<LogLinesTable>): LogLine {
  return { runId: r.run_id, seq: r.seq, at: r.at, level: r.level as LogLine['level'], message: r.message };
}

export function jobToRow(j: JobRecord): JobsTable {
  return { repo: j.repo, name: j.name, job_id: j.jobId, definition: JSON.stringify(j.definition), updated_at: j.updatedAt };
}

export function jobFromRow(r: Selectable<JobsTable>): JobRecord {
  return {
    repo: r.repo,
    name: r.name,
    jobId: r.job_id,
    definition: parseJson<Record<string, unknown>>(r.definition, `definition of job ${r.name}`),
    updatedAt: r.updated_at,
  };
}

export function pointToRow(p: PointRecord): PointsTable {
  return {
    repo: p.repo,
    job: p.job,
    point_id: p.pointId,
    seq: p.seq,
    created_at: p.createdAt,
    kind: p.kind,
    file: p.file,
    chain_id: p.chainId,
    disk_bytes: p.diskBytes,
    stored_bytes: p.storedBytes,
    gfs: JSON.stringify(p.gfs),
    health: p.health,
    change_method: p.changeMethod,
    detail: p.detail === undefined ? null : JSON.stringify(p.detail),
  };
}

export function pointFromRow(r: Selectable<PointsTable>): PointRecord {
  return {
    repo: r.repo,
    job: r.job,
    pointId: r.point_id,
    seq: r.seq,
    createdAt: r.created_at,
    kind: r.kind as PointRecord['kind'],
    file: r.file,
    chainId: r.chain_id,
    diskBytes: r.disk_bytes,
    storedBytes: r.stored_bytes,
    gfs: parseJson<PointRecord['gfs']>(r.gfs, `GFS flags of point ${r.point_id}`),
    health: r.health as PointRecord['health'],
    changeMethod: r.change_method as ChangeMethod | null,
    ...(r.detail === null ? {} : { detail: parseJson<Record<string, unknown>>(r.detail, `detail of point ${r.point_id}`) }),
  };
}

export function jobReadToRow(r: JobReadRecord): JobReadsTable {
  return {
    repo: r.repo,
    job: r.job,
    signature: r.signature,
    read_at: r.readAt,
    points: r.points,
    damaged_points: r.damagedPoints,
    unavailable_points: r.unavailablePoints,
    damaged_files: r.damagedFiles,
    stored_bytes: r.storedBytes,
    last_point_id: r.lastPointId,
    last_point_at: r.lastPointAt,
  };
}

export function jobReadFromRow(r: Selectable<JobReadsTable>): JobReadRecord {
  return {
    repo: r.repo,
    job: r.job,
    signature: r.signature,
    readAt: r.read_at,
    points: r.points,
    damagedPoints: r.damaged_points,
    unavailablePoints: r.unavailable_points,
    damagedFiles: r.damaged_files,
    storedBytes: r.stored_bytes,
    lastPointId: r.last_point_id,
    lastPointAt: r.last_point_at,
  };
}

export function usageSampleToRow(s: UsageSample): UsageSamplesTable {
  return { repo: s.repo, at: s.at, bytes: s.bytes, free_bytes: s.freeBytes, total_bytes: s.totalBytes };
}

export function usageSampleFromRow(r: Selectable<UsageSamplesTable>): UsageSample {
  return { repo: r.repo, at: r.at, bytes: r.bytes, freeBytes: r.free_bytes, totalBytes: r.total_bytes };
}

export function userToRow(u: UserRecord): UsersTable {
  return { name: u.name, role: u.role, password_hash: u.passwordHash, created_at: u.createdAt };
}

export function userFromRow(r: Selectable<UsersTable>): UserRecord {
  return { name: r.name, role: r.role as UserRole, passwordHash: r.password_hash, createdAt: r.created_at };
}

export function tokenToRow(t: TokenRecord): ApiTokensTable {
  return { id: t.id, user_name: t.user, name: t.name, hash: t.hash, created_at: t.createdAt, last_used_at: t.lastUsedAt };
}

export function tokenFromRow(r: Selectable<ApiTokensTable>): TokenRecord {
  return { id: r.id, user: r.user_name, name: r.name, hash: r.hash, createdAt: r.created_at, lastUsedAt: r.last_used_at };
}

export function webSessionToRow(s: WebSessionRecord): WebSessionsTable {
  return { id_hash: s.idHash, user_name: s.user, csrf_token: s.csrfToken, created_at: s.createdAt, expires_at: s.expiresAt };
}

export function webSessionFromRow(r: Selectable<WebSessionsTable>): WebSessionRecord {
  return { idHash: r.id_hash, user: r.user_name, csrfToken: r.csrf_token, createdAt: r.created_at, expiresAt: r.expires_at };
}

/** A VM passed when it booted and every test of it passed. */
export const labVmOk = (v: LabVmRecord): boolean => v.booted && v.tests.every((t) => t.ok);

export function labReportToRow(r: LabReportRecord): Omit<LabReportsTable, 'seq'> {
  return {
    repo: r.repo,
    id: r.id,
    started_at: r.startedAt,
    ended_at: r.endedAt,
    ok: r.ok ? 1 : 0,
    report_dir: r.reportDir,
    vms: JSON.stringify(r.vms),
    run_id: r.runId ?? null,
  };
}

export function labReportFromRow(r: Selectable<LabReportsTable>): LabReportRecord {
  return {
    repo: r.repo,
    id: r.id,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    ok: Number(r.ok) === 1,
    reportDir: r.report_dir,
    vms: parseJson<LabVmRecord[]>(r.vms, `VMs of report ${r.id}`),
    ...(r.run_id !== null ? { runId: Number(r.run_id) } : {}),
  };
}

export function labVmResultRows(r: LabReportRecord, reportSeq: number): LabVmResultsTable[] {
  return r.vms.map((v, vm) => ({ report_seq: reportSeq, vm, repo: r.repo, job: v.job, point_id: v.point, ok: labVmOk(v) ? 1 : 0, tested_at: r.endedAt }));
}
