import { isAbsolute } from 'node:path';
import type { HandOffRequest } from './control-runs.js';
import { LifeboatError } from '../core/errors.js';
import type { StartOptions } from '../recovery/index.js';

/**
 * The control API's request bodies, checked field by field: a wrong type or
 * an unknown field is answered 400 LFB_ERR_USAGE naming the field, never
 * passed on to the sessions as whatever JSON.parse made of it.
 */

export interface StartRequest {
  readonly job: string;
  readonly point: string;
  readonly options: StartOptions;
}

export interface AddDiskRequest {
  readonly size: number;
  readonly name: string | undefined;
}

export interface MigrateRequest {
  readonly to: string | undefined;
  readonly format: 'raw' | 'qcow2';
  readonly rateBytesPerSec: number | null;
  readonly finish: boolean;
  /** With finish: close NBD connections and refuse writes instead of refusing to finish. */
  readonly force: boolean;
}

function usage(route: string, message: string): LifeboatError {
  return new LifeboatError('LFB_ERR_USAGE', `${route}: ${message}`);
}

/** The fields of one JSON object, each read once with its expected type. */
class Fields {
  constructor(
    private readonly route: string,
    private readonly prefix: string,
    private readonly body: Readonly<Record<string, unknown>>,
    known: readonly string[],
  ) {
    for (const k of Object.keys(body)) if (!known.includes(k)) throw usage(route, `unknown field "${prefix}${k}" (known: ${known.join(', ')})`);
  }

  private fail(name: string, what: string): never {
    throw usage(this.route, `"${this.prefix}${name}" must be ${what}`);
  }

  private value(name: string): unknown {
    const v = this.body[name];
    return v === null ? undefined : v;
  }

  string(name: string, what = 'a string'): string | undefined {
    const v = this.value(name);
    if (v === undefined) return undefined;
    return typeof v === 'string' && v !== '' ? v : this.fail(name, what);
  }

  requiredString(name: string, what: string): string {
    return this.string(name, what) ?? this.fail(name, what);
  }

  absolutePath(name: string): string | undefined {
    const what = 'an absolute path';
    const v = this.string(name, what);
    return v === undefined || (isAbsolute(v) && !v.includes('\0')) ? v : this.fail(name, what);
  }

  oneOf<T extends string>(name: string, choices: readonly T[]): T | undefined {
    const v = this.value(name);
    if (v === undefined) return undefined;
    return (choices as readonly unknown[]).includes(v) ? (v as T) : this.fail(name, `one of ${choices.join(', ')}`);
  }

  boolean(name: string): boolean | undefined {
    const v = this.value(name);
    if (v === undefined) return undefined;
    return typeof v === 'boolean' ? v : this.fail(name, 'true or false');
  }

  positiveInteger(name: string, what: string): number | undefined {
    const v = this.value(name);
    if (v === undefined) return undefined;
    return Number.isSafeInteger(v) && (v as number) > 0 ? (v as number) : this.fail(name, what);
  }

  positiveNumber(name: string, what: string): number | undefined {
    const v = this.value(name);
    if (v === undefined) return undefined;
    return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : this.fail(name, what);
  }

  indexes(name: string): number[] | undefined {
    const v = this.value(name);
    if (v === undefined) return undefined;
    const what = 'an array of disk indexes (integers from 0)';
    return Array.isArray(v) && v.length <= 1024 && v.every((i) => Number.isSafeInteger(i) && (i as number) >= 0) ? (v as number[]) : this.fail(name, what);
  }

  object(name: string, known: readonly string[]): Fields | undefined {
    const v = this.value(name);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(name, `an object (fields: ${known.join(', ')})`);
    return new Fields(this.route, `${this.prefix}${name}.`, v as Record<string, unknown>, known);
  }
}

/** The body text as a JSON object, or LFB_ERR_USAGE. */
function objectBody(route: string, text: string, known: readonly string[]): Fields {
  let body: unknown;
  try {
    body = JSON.parse(text === '' ? '{}' : text);
  } catch (err) {
    throw usage(route, `the body is not valid JSON (${(err as Error).message})`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw usage(route, 'the body must be a JSON object');
  return new Fields(route, '', body as Record<string, unknown>, known);
}

/** POST /sessions {job, point, name?, cacheDir?, disks?, boot?: {accel?, network?}} */
export function parseStartRequest(text: string): StartRequest {
  const f = objectBody('POST /sessions', text, ['job', 'point', 'name', 'cacheDir', 'disks', 'boot']);
  const job = f.requiredString('job', 'a string (the job name)');
  const point = f.requiredString('point', 'a string (a point id, or "latest")');
  const name = f.string('name', 'a string (the session name)');
  const cacheDir = f.absolutePath('cacheDir');
  const disks = f.indexes('disks');
  const boot = f.object('boot', ['accel', 'network']);
  return {
    job,
    point,
    options: {
      name,
      cacheDir,
      disks,
      boot: boot && { accel: boot.oneOf('accel', ['kvm', 'tcg'] as const), network: boot.string('network') },
    },
  };
}

/** POST /sessions/<name>/disks {size, name?} */
export function parseAddDiskRequest(text: string): AddDiskRequest {
  const f = objectBody('POST /sessions/<name>/disks', text, ['size', 'name']);
  const what = 'a positive integer (bytes)';
  const size = f.positiveInteger('size', what);
  if (size === undefined) throw usage('POST /sessions/<name>/disks', `"size" must be ${what}`);
  return { size, name: f.string('name', 'a string (the disk name)') };
}

/** POST /sessions/<name>/migrate {to?, format?, rate?, finish?, force?} */
export function parseMigrateRequest(text: string): MigrateRequest {
  const f = objectBody('POST /sessions/<name>/migrate', text, ['to', 'format', 'rate', 'finish', 'force']);
  return {
    to: f.absolutePath('to'),
    format: f.oneOf('format', ['raw', 'qcow2'] as const) ?? 'raw',
    rateBytesPerSec: f.positiveNumber('rate', 'a positive number (bytes per second)') ?? null,
    finish: f.boolean('finish') ?? false,
    force: f.boolean('force') ?? false,
  };
}

/** POST /runs {job, activeFull?, acceptSourceChange?, waitMs?} */
export function parseRunRequest(text: string): HandOffRequest {
  const route = 'POST /runs';
  const f = objectBody(route, text, ['job', 'activeFull', 'acceptSourceChange', 'waitMs', 'kind']);
  const job = f.string('job', 'a job name');
  if (job === undefined) throw usage(route, '"job" must be a job name');
  const kind = f.oneOf('kind', ['backup', 'surebackup', 'copy'] as const);
  return {
    job,
    ...(kind === 'surebackup' || kind === 'copy' ? { kind } : {}),
    activeFull: f.boolean('activeFull') ?? false,
    acceptSourceChange: f.boolean('acceptSourceChange') ?? false,
    waitMs: f.positiveInteger('waitMs', 'a positive integer (milliseconds)') ?? 0,
  };
}

/** What `lifeboat files ls|find|get` ask of a running server. */
export interface FilesRequest {
  readonly job: string;
  readonly point: string;
  /** A guest path, `<fs id>:/…` or `/…`. */
  readonly path?: string;
  /** find: the shell pattern. */
  readonly name?: string;
}

/** POST /files/ls|find|copy {job, point, path?, name?} */
export function parseFilesRequest(route: string, text: string): FilesRequest {
  const f = objectBody(route, text, ['job', 'point', 'path', 'name']);
  const path = f.string('path', 'a guest path');
  const name = f.string('name', 'a shell pattern');
  return {
    job: f.requiredString('job', 'a job name'),
    point: f.requiredString('point', 'a point id or latest'),
    ...(path !== undefined ? { path } : {}),
    ...(name !== undefined ? { name } : {}),
  };
}
