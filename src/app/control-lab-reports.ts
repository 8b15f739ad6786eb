import { isAbsolute } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { LabTestResult, LabVmReport, SureBackupReport } from '../lab/types.js';

/**
 * What `lifeboat surebackup run` hands to the running server at its end
 * (POST /surebackup/reports of the control API), for the server to record in
 * its catalog: the report as report.json has it.
 */
export interface HandedLabReport extends SureBackupReport {
  readonly vms: readonly (LabVmReport & { readonly note?: string })[];
  /** The folder of report.json and the screenshots. */
  readonly reportDir: string;
}

/** The control API's SureBackup reports: the service (src/service) implements it over its catalog. */
export interface ControlLabReports {
  record(report: HandedLabReport): Promise<{ readonly id: string }>;
}

/** A report's body is larger than other requests' (each VM's tests and their details), but still bounded. */
export const MAX_REPORT_BODY_BYTES = 1024 * 1024;
const MAX_VMS = 256;
const MAX_TESTS = 1024;
const MAX_TEXT = 64 * 1024;
const ROUTE = 'POST /surebackup/reports';

function usage(message: string): LifeboatError {
  return new LifeboatError('LFB_ERR_USAGE', `${ROUTE}: ${message}`);
}

type Json = Record<string, unknown>;

/**
 * Fields this server does not know are left out, not refused: the lab's tests may report more
 * (a screenshot's size), and a newer CLI's report still reaches an older server.
 */
function object(v: unknown, where: string, required: readonly string[]): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw usage(`${where} must be a JSON object`);
  const o = v as Json;
  for (const k of required) if (o[k] === undefined || o[k] === null) throw usage(`"${where === 'the body' ? '' : `${where}.`}${k}" is missing`);
  return o;
}

function text(o: Json, k: string, where: string, max = MAX_TEXT): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length > max) throw usage(`"${where}${k}" must be a string of at most ${max} characters`);
  return v;
}

function num(o: Json, k: string, where: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw usage(`"${where}${k}" must be a number from 0`);
  return v;
}

function bool(o: Json, k: string, where: string): boolean {
  const v = o[k];
  if (typeof v !== 'boolean') throw usage(`"${where}${k}" must be true or false`);
  return v;
}

function time(o: Json, k: string, where: string): string {
  const v = text(o, k, where, 64);
  if (Number.isNaN(Date.parse(v))) throw usage(`"${where}${k}" must be an ISO-8601 time`);
  return v;
}

function list(o: Json, k: string, where: string, max: number): unknown[] {
  const v = o[k];
  if (!Array.isArray(v) || v.length > max) throw usage(`"${where}${k}" must be an array of at most ${max} items`);
  return v;
}

function test(v: unknown, where: string): LabTestResult {
  const o = object(v, where, ['name', 'ok', 'detail', 'ms']);
  const p = `${where}.`;
  return { name: text(o, 'name', p, 4096), ok: bool(o, 'ok', p), detail: text(o, 'detail', p), ms: num(o, 'ms', p) };
}

function vm(v: unknown, where: string): LabVmReport & { note?: string } {
  const o = object(v, where, ['job', 'point', 'name', 'ip', 'booted', 'seconds', 'tests']);
  const p = `${where}.`;
  const screenshot = o['screenshot'] === undefined ? undefined : text(o, 'screenshot', p, 4096);
  if (screenshot !== undefined && (!isAbsolute(screenshot) || screenshot.includes('\0'))) throw usage(`"${p}screenshot" must be an absolute path`);
  const note = o['note'] === undefined ? undefined : text(o, 'note', p);
  return {
    job: text(o, 'job', p, 256),
    point: text(o, 'point', p, 256),
    name: text(o, 'name', p, 256),
    ip: text(o, 'ip', p, 64),
    booted: bool(o, 'booted', p),
    seconds: num(o, 'seconds', p),
    tests: list(o, 'tests', p, MAX_TESTS).map((t, i) => test(t, `${p}tests[${i}]`)),
    ...(screenshot !== undefined ? { screenshot } : {}),
    ...(note !== undefined ? { note } : {}),
  };
}

/**
 * POST /surebackup/reports {id, startedAt, endedAt, ok, reportDir, vms: [{job, point, name, ip, booted, seconds, note?, tests, screenshot?}]},
 * checked field by field (what it keeps is what the catalog records). `ok` is taken from the VMs (every one booted and passed every test), not from the body.
 */
export function parseLabReport(body: string): HandedLabReport {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (err) {
    throw usage(`the body is not valid JSON (${(err as Error).message})`);
  }
  const o = object(parsed, 'the body', ['id', 'startedAt', 'endedAt', 'reportDir', 'vms']);
  const id = text(o, 'id', '', 128);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id)) throw usage(`"id" must be letters, digits, . _ - (the lab's id), not ${JSON.stringify(id)}`);
  const reportDir = text(o, 'reportDir', '', 4096);
  if (!isAbsolute(reportDir) || reportDir.includes('\0')) throw usage('"reportDir" must be an absolute path');
  const vms = list(o, 'vms', '', MAX_VMS).map((v, i) => vm(v, `vms[${i}]`));
  if (vms.length === 0) throw usage('"vms" must name at least one VM');
  return {
    id,
    startedAt: time(o, 'startedAt', ''),
    endedAt: time(o, 'endedAt', ''),
    ok: vms.every((v) => v.booted && v.tests.every((t) => t.ok)),
    reportDir,
    vms,
  };
}
