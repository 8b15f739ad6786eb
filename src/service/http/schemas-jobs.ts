/** The API's jobs: what create and change take, and how a job is shown. */
import { Type, type Static } from 'typebox';
import { Name, Weekday, literals, nullable, Time, Gfs, RunState } from './schemas-common.js';

const Disks = Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), {
  minItems: 1,
  maxItems: 64,
  description: 'image files, block devices or nbd:// URIs on the server',
});
const Method = literals(['forward', 'forever', 'reverse']);
const DiskFormat = literals(['raw', 'qcow2', 'vmdk', 'vhdx', 'vdi', 'vpc', 'qed']);
const Schedule = Type.String({ minLength: 1, maxLength: 256, description: 'cron expression: 5 fields, or 6 with seconds first' });
const Window = Type.String({ minLength: 1, maxLength: 32, description: 'HH:MM-HH:MM (may wrap midnight)' });
const Duration = Type.String({ minLength: 1, maxLength: 32, description: 'e.g. 30s, 10m, 1h' });
const Weekdays = Type.Array(Weekday, { maxItems: 7 });

/** The settings create and change take alike (each optional in both). */
const SETTINGS = {
  drives: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 64 })),
  method: Type.Optional(Method),
  retainPoints: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
  retainDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
  activeFullDays: Type.Optional(Weekdays),
  syntheticFullDays: Type.Optional(Weekdays),
  transformToRollbacks: Type.Optional(Type.Boolean()),
  cbt: Type.Optional(Type.Boolean()),
  diskFormat: Type.Optional(DiskFormat),
};

/** `job create`'s settings; what is left out gets `job create`'s default. */
export const JobCreateBody = Type.Object(
  {
    name: Name,
    disks: Type.Optional(Disks),
    qmp: Type.Optional(Type.String({ minLength: 1, description: "a running VM's QMP monitor socket (with drives)" })),
    ...SETTINGS,
    gfs: Type.Optional(Gfs),
    vmConfigFile: Type.Optional(Type.String({ minLength: 1, description: 'a JSON file on the server with the VM settings' })),
    schedule: Type.Optional(Schedule),
    window: Type.Optional(Window),
    retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    retryDelay: Type.Optional(Duration),
    after: Type.Optional(Name),
    disabled: Type.Optional(Type.Boolean()),
    mover: Type.Optional(Name),
  },
  { additionalProperties: false },
);
export type JobCreateBody = Static<typeof JobCreateBody>;

/** `job set`: only what is given changes; null clears a setting. */
export const JobChangeBody = Type.Object(
  {
    disks: Type.Optional(Disks),
    qmp: Type.Optional(Type.String({ minLength: 1 })),
    ...SETTINGS,
    gfs: Type.Optional(nullable(Gfs)),
    vmConfigFile: Type.Optional(Type.String({ minLength: 1 })),
    schedule: Type.Optional(nullable(Schedule)),
    window: Type.Optional(nullable(Window)),
    retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    retryDelay: Type.Optional(Duration),
    after: Type.Optional(nullable(Name)),
    disabled: Type.Optional(Type.Boolean()),
    mover: Type.Optional(nullable(Name)),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type JobChangeBody = Static<typeof JobChangeBody>;

/** A job as job.json defines it. */
export const JobDefinition = Type.Object(
  {
    jobId: Type.String(),
    name: Type.String(),
    createdAt: Type.String(),
    disks: Type.Array(Type.String()),
    method: Method,
    retainPoints: Type.Integer(),
    retainDays: Type.Optional(Type.Integer()),
    activeFullDays: Type.Array(Type.String()),
    syntheticFullDays: Type.Optional(Type.Array(Type.String())),
    transformToRollbacks: Type.Optional(Type.Boolean()),
    cbt: Type.Optional(Type.Boolean()),
    diskFormat: Type.Optional(Type.String()),
    gfs: Type.Optional(Gfs),
    blockSize: Type.Integer(),
    compression: Type.String(),
    vm: nullable(Type.Object({}, { additionalProperties: true, description: 'VM settings given with the job; the rest is read at each backup' })),
    schedule: Type.Optional(Type.String()),
    window: Type.Optional(Type.String()),
    retries: Type.Optional(Type.Integer()),
    retryDelay: Type.Optional(Type.String()),
    after: Type.Optional(Type.String()),
    disabled: Type.Optional(Type.Boolean()),
    mover: Type.Optional(Type.String({ description: 'the data mover or group of movers that runs its backups; absent: the server' })),
  },
  { $id: 'Job', additionalProperties: false },
);

export const JobSummary = Type.Object(
  {
    repo: Name,
    job: Type.Ref('Job'),
    points: Type.Integer({ description: 'restorable points (damaged ones too; unavailable ones not)' }),
    damagedFiles: Type.Integer({ description: 'backup files that cannot be read at all' }),
    nextRunAt: nullable(Time),
    damagedPoints: Type.Integer({ description: 'points whose data a verify found damaged' }),
    unavailablePoints: Type.Integer({ description: 'points that cannot be restored (a file of their chain is missing or unreadable)' }),
    storedBytes: Type.Integer({ description: "what the job's backup files take, all of them" }),
    lastRun: nullable(
      Type.Object(
        { id: Type.Integer(), state: RunState, endedAt: nullable(Time), errorCode: nullable(Type.String()) },
        { additionalProperties: false, description: "the job's newest run in the catalog (queued or running ones too)" },
      ),
    ),
    lastPoint: nullable(
      Type.Object(
        { id: Type.String(), createdAt: Time, ageSeconds: Type.Integer({ minimum: 0, description: 'seconds from createdAt to the answer' }) },
        { additionalProperties: false, description: 'the newest restorable point' },
      ),
    ),
  },
  { additionalProperties: false },
);

export const JobCreated = Type.Object({ repo: Name, job: Type.Ref('Job'), warnings: Type.Array(Type.String()) }, { additionalProperties: false });

export const JobDeleteQuery = Type.Object(
  { withPoints: Type.Optional(Type.Boolean({ description: "delete the job's backup files too (refused while a session holds one)" })) },
  { additionalProperties: false },
);
export const JobDeleted = Type.Object({ pointsDeleted: Type.Integer(), filesDeleted: Type.Integer() }, { additionalProperties: false });
