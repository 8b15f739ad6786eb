import type { Migration } from './migration.js';
import { v001CoreTables } from './v001-core-tables.js';
import { v002ChangeMethod } from './v002-change-method.js';
import { v003ListIndexes } from './v003-list-indexes.js';
import { v004RunsRepoStateIndex } from './v004-runs-repo-state-index.js';
import { v005JobReadsUsageSamples } from './v005-job-reads-usage-samples.js';
import { v006LabReports } from './v006-lab-reports.js';
import { v007RunKind } from './v007-run-kind.js';
import { v008Leases } from './v008-leases.js';

export type { Migration } from './migration.js';

/** Every schema version in order; the last is what this Lifeboat writes. */
export const MIGRATIONS: readonly Migration[] = [
  v001CoreTables,
  v002ChangeMethod,
  v003ListIndexes,
  v004RunsRepoStateIndex,
  v005JobReadsUsageSamples,
  v006LabReports,
  v007RunKind,
  v008Leases,
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
