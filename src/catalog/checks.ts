/** Argument checks and the not-found errors of the catalog's calls. */
import { LifeboatError } from '../core/errors.js';
import { RUN_STATES, type RunFilter } from './catalog.js';

export function invalid(message: string): LifeboatError {
  return new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `catalog: ${message}`);
}

export function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw invalid(`${what} ${JSON.stringify(value)} is not one of ${allowed.join(', ')}`);
  return value as T;
}

export function pageSize(limit: number | undefined, fallback: number, max: number, what: string): number {
  if (limit === undefined) return fallback;
  if (!Number.isInteger(limit) || limit < 1) throw invalid(`${what} limit must be a whole number of at least 1 (got ${limit})`);
  return Math.min(limit, max);
}

/**
 * Times are compared as text, which is only right when both sides are spelled
 * as toISOString() spells them: a time given another way (no milliseconds, an
 * offset) is respelled first.
 */
export function isoInstant(value: string, what: string): string {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw invalid(`${what} ${JSON.stringify(value)} is not an ISO-8601 time`);
  return new Date(ms).toISOString();
}

/** Rows per INSERT: well below SQLite's 32766 bound variables at 13 columns a row. */
export const INSERT_CHUNK = 500;

export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export function runNotFound(id: number): LifeboatError {
  return new LifeboatError('LFB_ERR_RUN_NOT_FOUND', `no run ${id} in the catalog`, { details: { run: id } });
}

export function userNotFound(name: string): LifeboatError {
  return new LifeboatError('LFB_ERR_USER_NOT_FOUND', `no user ${JSON.stringify(name)}`, { details: { user: name } });
}

const DEFAULT_RUN_PAGE = 50;
const MAX_RUN_PAGE = 1000;

/** A run listing's page size and `since` as an ISO instant, its arguments checked; undefined when no run can pass (no state asked for). */
export function checkedRunPage(filter: RunFilter): { readonly limit: number; readonly since: string | undefined } | undefined {
  const limit = pageSize(filter.limit, DEFAULT_RUN_PAGE, MAX_RUN_PAGE, 'run list');
  for (const s of filter.states ?? []) oneOf(s, RUN_STATES, 'state');
  if (filter.states !== undefined && filter.states.length === 0) return undefined;
  return { limit, since: filter.since === undefined ? undefined : isoInstant(filter.since, 'since') };
}
