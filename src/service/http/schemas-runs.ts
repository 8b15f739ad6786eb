/** The API's runs, their tasks and logs, and the points they made. */
import { Type, type Static } from 'typebox';
import { RUN_KINDS } from '../../catalog/catalog.js';
import { Name, literals, nullable, Time, RunState, RunTrigger, ChangeMethod } from './schemas-common.js';

export const RunRecord = Type.Object(
  {
    id: Type.Integer(),
    repo: Type.String({ description: "the repository's folder" }),
    repoName: Type.String({ description: "the repository's name in URLs (its folder when this server does not serve it)" }),
    job: Type.String({ description: 'the backup job, or the SureBackup or copy job of a surebackup or copy run (capacity-tier for a tier run)' }),
    kind: literals(RUN_KINDS, {
      description:
        "a backup, a SureBackup job booting and testing its group, a copy job copying a job's new points, or the capacity tier copying and moving backup files to object storage",
    }),
    trigger: RunTrigger,
    attempt: Type.Integer(),
    retryOf: nullable(Type.Integer()),
    state: RunState,
    queuedAt: Time,
    startedAt: nullable(Time),
    endedAt: nullable(Time),
    bytesRead: Type.Integer(),
    bytesStored: Type.Integer(),
    steps: Type.Record(Type.String(), Type.Number(), { description: 'milliseconds by step' }),
    errorCode: nullable(Type.String()),
    errorMessage: nullable(Type.String()),
    pointId: nullable(Type.String()),
    changeMethod: nullable(ChangeMethod),
    changeReason: nullable(Type.String()),
    reportId: nullable(Type.String({ description: "a SureBackup run's report" })),
  },
  { $id: 'Run', additionalProperties: false },
);

export const RunListQuery = Type.Object(
  {
    repo: Type.Optional(Name),
    job: Type.Optional(Name),
    kind: Type.Optional(
      literals(RUN_KINDS, {
        description: "only runs of this kind (a SureBackup or copy job may have a backup job's name); default all",
      }),
    ),
    state: Type.Optional(Type.Array(RunState, { maxItems: 7, description: 'one or more states (repeat the parameter)' })),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'runs queued at or after this time' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
    before: Type.Optional(Type.Integer({ minimum: 1, description: "the previous page's next" })),
  },
  { additionalProperties: false },
);
export type RunListQuery = Static<typeof RunListQuery>;
export const RunPage = Type.Object({ runs: Type.Array(Type.Ref('Run')), next: nullable(Type.Integer()) }, { additionalProperties: false });

export const Task = Type.Object(
  {
    disk: Type.Integer(),
    diskName: Type.String(),
    state: RunState,
    startedAt: nullable(Time),
    endedAt: nullable(Time),
    bytesRead: Type.Integer(),
    bytesStored: Type.Integer(),
  },
  { additionalProperties: false },
);
export const LogLine = Type.Object(
  { seq: Type.Integer(), at: Time, level: literals(['debug', 'info', 'warn', 'error']), message: Type.String() },
  { additionalProperties: false },
);
export const RunDetailQuery = Type.Object(
  {
    logAfter: Type.Optional(Type.Integer({ minimum: 0, description: 'log lines after this seq' })),
    logLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 1000 })),
  },
  { additionalProperties: false },
);
export const RunDetail = Type.Object({ run: Type.Ref('Run'), tasks: Type.Array(Task), log: Type.Array(LogLine) }, { additionalProperties: false });

export const DiskChanges = Type.Object(
  { method: ChangeMethod, note: Type.Optional(Type.String({ description: 'why CBT was not used although the job asks for it' })) },
  { additionalProperties: false },
);
export const Point = Type.Object(
  {
    id: Type.String(),
    seq: Type.Integer(),
    createdAt: Time,
    kind: literals(['full', 'increment', 'rollback']),
    file: Type.String(),
    chainId: nullable(Type.String()),
    parentId: nullable(Type.String()),
    diskSizes: Type.Array(Type.Integer()),
    diskBytes: Type.Integer({ description: 'the disks together' }),
    storedBytes: nullable(Type.Integer({ description: "the point's backup file" })),
    gfs: Type.Array(literals(['weekly', 'monthly', 'yearly'])),
    health: literals(['ok', 'damaged', 'unavailable']),
    problem: Type.Optional(Type.String()),
    problemCode: Type.Optional(Type.String()),
    changes: Type.Array(DiskChanges, { description: 'per disk' }),
    changeMethod: nullable(ChangeMethod),
    place: Type.Optional(
      literals(['local', 'capacity', 'both'], {
        description: "a repository with a capacity tier: where the point's backup file is (the folder, the capacity extent, or both)",
      }),
    ),
  },
  { additionalProperties: false },
);
export const UsageSampleQuery = Type.Object(
  {
    since: Type.Optional(Type.String({ format: 'date-time', description: 'samples at or after (default: 30 days before until)' })),
    until: Type.Optional(Type.String({ format: 'date-time', description: 'samples at or before (default: now)' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000, description: 'the newest this many of the period (default 1000)' })),
  },
  { additionalProperties: false },
);

export const UsageSamples = Type.Object(
  {
    repo: Name,
    samples: Type.Array(
      Type.Object(
        {
          at: Time,
          bytes: Type.Integer({ description: "what the repository's backup files took" }),
          freeBytes: Type.Integer(),
          totalBytes: Type.Integer(),
        },
        { additionalProperties: false },
      ),
      { description: 'oldest first' },
    ),
  },
  { additionalProperties: false },
);

export const PointList = Type.Object({ repo: Name, job: Type.String(), points: Type.Array(Point) }, { additionalProperties: false });
