/** What the catalog suites share: the factory's shape, times, and records to store. */
import assert from 'node:assert/strict';
import type { Catalog, NewRun, PointRecord, TokenRecord, UserRecord, WebSessionRecord } from '../catalog/catalog.js';
import { isLifeboatError, type ErrorCode } from '../core/errors.js';

export interface CatalogFixture {
  /** Opens a catalog on this fixture's database: the first call finds it empty; later calls are further connections to the same data. */
  open(): Promise<Catalog>;
  /** Removes the database (every catalog from open() is closed by then). */
  cleanup(): Promise<void>;
}

/** Makes a fresh, empty database for one test. */
export type CatalogFactory = () => Promise<CatalogFixture>;

/** Registers one conformance test: `body` gets a fresh empty catalog and a way to open more on its database. */
export type ConformanceTest = (title: string, body: (catalog: Catalog, openAnother: () => Promise<Catalog>) => Promise<void>) => void;

const T0 = Date.parse('2026-03-01T00:00:00.000Z');
/** The time `minutes` after T0, as the catalog stores times. */
export function at(minutes: number): string {
  return new Date(T0 + minutes * 60_000).toISOString();
}

export function newRun(job: string, minutes: number, repo = '/repos/a'): NewRun {
  return { repo, job, trigger: 'schedule', attempt: 1, retryOf: null, queuedAt: at(minutes) };
}

export async function rejectsWith(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isLifeboatError(err, code), `expected ${code}, got ${String(err)}`);
    return true;
  });
}

export const user = (name: string, role: UserRecord['role'] = 'operator'): UserRecord => ({
  name,
  role,
  passwordHash: `scrypt$salt$${name}`,
  createdAt: at(0),
});
export const token = (id: string, userName: string, minutes = 0): TokenRecord => ({
  id,
  user: userName,
  name: `token ${id}`,
  hash: `hash-${id}`,
  createdAt: at(minutes),
  lastUsedAt: null,
});
export const webSession = (idHash: string, userName: string, expiresMinutes: number): WebSessionRecord => ({
  idHash,
  user: userName,
  csrfToken: `csrf-${idHash}`,
  createdAt: at(0),
  expiresAt: at(expiresMinutes),
});
export const point = (job: string, seq: number, extra: Partial<PointRecord> = {}): PointRecord => ({
  repo: '/repos/a',
  job,
  pointId: `${job}-p${seq}`,
  seq,
  createdAt: at(seq),
  kind: seq === 1 ? 'full' : 'increment',
  file: `${job}-${seq}.lbk`,
  chainId: 'chain-1',
  diskBytes: 10 * 2 ** 30,
  storedBytes: 2 ** 33 + seq,
  gfs: [],
  health: 'ok',
  changeMethod: seq === 1 ? 'full' : 'cbt',
  ...extra,
});
