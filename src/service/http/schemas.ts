/**
 * The API's data shapes, once: TypeBox schemas are at the same time the
 * JSON Schema fastify validates and serializes with, what the OpenAPI
 * document publishes, and (through Static) the handlers' TypeScript types.
 */
import { Type, type Static, type TSchema } from 'typebox';
import { CHANGE_METHODS, RUN_KINDS, RUN_STATES, RUN_TRIGGERS, USER_ROLES } from '../../catalog/catalog.js';

const literals = Type.Enum;
const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Time = Type.String({ format: 'date-time' });

export const ErrorBody = Type.Object(
  {
    code: Type.String({ description: 'a stable Lifeboat error code (docs/errors.md)', pattern: '^LFB_ERR_[A-Z_]+$' }),
    message: Type.String(),
  },
  { $id: 'Error', additionalProperties: false },
);

/** Every route answers errors in the same shape: listed for each status class. */
export const ERROR_RESPONSES = {
  '4xx': Type.Ref('Error', { description: 'refused: {code, message} (401 credentials, 403 role or CSRF, 404, 409 conflict, 422 bad input, 429 rate)' }),
  '5xx': Type.Ref('Error', { description: 'failed: {code, message}' }),
} as const;

export const Role = literals(USER_ROLES);
export const RunState = literals(RUN_STATES);
export const RunTrigger = literals(RUN_TRIGGERS);
export const ChangeMethod = literals(CHANGE_METHODS);
export const Weekday = literals(['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']);
export const Gfs = Type.Object(
  { weekly: Type.Integer({ minimum: 0 }), monthly: Type.Integer({ minimum: 0 }), yearly: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);

export const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', description: 'letters, digits, . _ -; 1-64 characters' });
export const RepoParams = Type.Object({ repo: Name }, { additionalProperties: false });
export const JobParams = Type.Object({ repo: Name, job: Name }, { additionalProperties: false });
export const RunParams = Type.Object({ id: Type.Integer({ minimum: 1 }) }, { additionalProperties: false });
export const SessionParams = Type.Object({ name: Name }, { additionalProperties: false });

export const Me = Type.Object(
  {
    user: Type.String(),
    role: Role,
    via: literals(['token', 'cookie']),
    csrfToken: Type.Optional(Type.String({ description: "a console session's CSRF token (via cookie), for a console that reloaded" })),
    expiresAt: Type.Optional(Time),
  },
  { additionalProperties: false },
);

export const LoginBody = Type.Object(
  { user: Type.String({ minLength: 1, maxLength: 128 }), password: Type.String({ minLength: 1, maxLength: 1024 }) },
  { additionalProperties: false },
);
export const LoginReply = Type.Object(
  {
    user: Type.String(),
    role: Role,
    csrfToken: Type.String({ description: 'send it as X-CSRF-Token with every request that changes something' }),
    expiresAt: Time,
  },
  { additionalProperties: false },
);

export const RepositoryUsage = Type.Object(
  {
    name: Name,
    root: Type.String({ description: "the repository's folder on the server" }),
    jobs: Type.Array(
      Type.Object(
        {
          name: Type.String(),
          points: Type.Integer(),
          unavailablePoints: Type.Integer(),
          files: Type.Integer({ description: 'backup files in the job folder (damaged and left-over ones too: they take space)' }),
          bytes: Type.Integer({ description: 'bytes of those backup files' }),
        },
        { additionalProperties: false },
      ),
    ),
    bytes: Type.Integer(),
    freeBytes: Type.Integer({ description: 'what an unprivileged writer can still use, as df shows it' }),
    totalBytes: Type.Integer(),
  },
  { additionalProperties: false },
);

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

/** `job create`'s settings; what is left out gets `job create`'s default. */
export const JobCreateBody = Type.Object(
  {
    name: Name,
    disks: Type.Optional(Disks),
    qmp: Type.Optional(Type.String({ minLength: 1, description: "a running VM's QMP monitor socket (with drives)" })),
    drives: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 64 })),
    method: Type.Optional(Method),
    retainPoints: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
    retainDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
    activeFullDays: Type.Optional(Weekdays),
    syntheticFullDays: Type.Optional(Weekdays),
    transformToRollbacks: Type.Optional(Type.Boolean()),
    cbt: Type.Optional(Type.Boolean()),
    diskFormat: Type.Optional(DiskFormat),
    gfs: Type.Optional(Gfs),
    vmConfigFile: Type.Optional(Type.String({ minLength: 1, description: 'a JSON file on the server with the VM settings' })),
    schedule: Type.Optional(Schedule),
    window: Type.Optional(Window),
    retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    retryDelay: Type.Optional(Duration),
    after: Type.Optional(Name),
    disabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type JobCreateBody = Static<typeof JobCreateBody>;

/** `job set`: only what is given changes; null clears a setting. */
export const JobChangeBody = Type.Object(
  {
    disks: Type.Optional(Disks),
    qmp: Type.Optional(Type.String({ minLength: 1 })),
    drives: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 64 })),
    method: Type.Optional(Method),
    retainPoints: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
    retainDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
    activeFullDays: Type.Optional(Weekdays),
    syntheticFullDays: Type.Optional(Weekdays),
    transformToRollbacks: Type.Optional(Type.Boolean()),
    cbt: Type.Optional(Type.Boolean()),
    diskFormat: Type.Optional(DiskFormat),
    gfs: Type.Optional(nullable(Gfs)),
    vmConfigFile: Type.Optional(Type.String({ minLength: 1 })),
    schedule: Type.Optional(nullable(Schedule)),
    window: Type.Optional(nullable(Window)),
    retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    retryDelay: Type.Optional(Duration),
    after: Type.Optional(nullable(Name)),
    disabled: Type.Optional(Type.Boolean()),
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

export const RunRecord = Type.Object(
  {
    id: Type.Integer(),
    repo: Type.String({ description: "the repository's folder" }),
    repoName: Type.String({ description: "the repository's name in URLs (its folder when this server does not serve it)" }),
    job: Type.String({ description: 'the backup job, or the SureBackup or copy job of a surebackup or copy run' }),
    kind: literals(RUN_KINDS, { description: "a backup, a SureBackup job booting and testing its group, or a copy job copying a job's new points" }),
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

export const RetentionPlan = Type.Object(
  {
    actions: Type.Array(
      Type.Object(
        {
          type: literals(['delete-chain', 'merge', 'delete-rollback', 'delete-increments']),
          chainId: Type.String(),
          pointIds: Type.Optional(Type.Array(Type.String())),
          pointId: Type.Optional(Type.String()),
          fullPointId: Type.Optional(Type.String()),
          incrementPointId: Type.Optional(Type.String()),
          reason: Type.String(),
        },
        { additionalProperties: false },
      ),
    ),
    kept: Type.Array(Type.Object({ id: Type.String(), reason: Type.String() }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export const VerifyBody = Type.Object(
  {
    point: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'an id, a unique prefix, or latest (default)' })),
    all: Type.Optional(Type.Boolean({ description: 'every backup file of the job instead of one point' })),
    repair: Type.Optional(Type.Boolean({ description: 'back up again at once when the latest point is damaged' })),
  },
  { additionalProperties: false },
);
const Problem = Type.Object(
  {
    file: Type.String(),
    code: Type.String(),
    message: Type.String(),
    offset: Type.Optional(Type.Integer()),
    disk: Type.Optional(Type.Integer()),
    block: Type.Optional(Type.Integer()),
  },
  { additionalProperties: true },
);
export const VerifyReply = Type.Object(
  {
    ok: Type.Boolean({ description: 'no problem left (none found, or a repair made a whole point)' }),
    files: Type.Integer(),
    blocks: Type.Integer(),
    storedBytes: Type.Integer(),
    points: Type.Array(Type.String()),
    problems: Type.Array(Problem),
    damagedPoints: Type.Array(Type.String()),
    repair: Type.Optional(
      Type.Object(
        {
          skipped: Type.Optional(Type.String()),
          pointId: Type.Optional(Type.String()),
          whole: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const RestoreBody = Type.Object(
  {
    point: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'an id, a unique prefix, or latest (default)' })),
    to: Type.String({
      minLength: 1,
      maxLength: 4096,
      pattern: '^/',
      description: 'an absolute path on the server: a file, or a folder (ends in /) for every disk',
    }),
    disk: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'a disk index or name' })),
    format: Type.Optional(literals(['raw', 'qcow2'])),
    force: Type.Optional(Type.Boolean({ description: 'overwrite an existing target' })),
  },
  { additionalProperties: false },
);
export const RestoreReply = Type.Object(
  {
    pointId: Type.String(),
    targets: Type.Array(
      Type.Object({ disk: Type.String(), path: Type.String(), format: Type.String(), bytesWritten: Type.Integer() }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);

export const Migration = Type.Object(
  {
    to: Type.String(),
    format: literals(['raw', 'qcow2']),
    mode: literals(['mirror', 'copy']),
    state: literals(['copying', 'synced', 'finishing', 'done', 'failed']),
    problem: Type.Optional(Type.String()),
    rateBytesPerSec: nullable(Type.Number()),
    startedAt: Type.String(),
    finishedAt: Type.Optional(Type.String()),
    disks: Type.Array(
      Type.Object({ name: Type.String(), size: Type.Integer(), target: Type.String(), copied: Type.Integer() }, { additionalProperties: false }),
    ),
  },
  { $id: 'Migration', additionalProperties: false },
);
export const Session = Type.Object(
  {
    repo: Name,
    name: Type.String(),
    job: Type.String(),
    pointId: Type.String(),
    createdAt: Type.String(),
    state: literals(['running', 'failed']),
    problem: Type.Optional(Type.String()),
    vmx: Type.String(),
    disks: Type.Array(
      Type.Object(
        {
          name: Type.String(),
          size: Type.Integer(),
          nfsPath: Type.String(),
          nbdExport: Type.String(),
          writtenBytes: Type.Integer({ description: 'what the overlay holds: the granules written, whole' }),
          io: Type.Object(
            { readBytes: Type.Integer(), writtenBytes: Type.Integer() },
            {
              additionalProperties: false,
              description: 'bytes clients read and wrote (NFS and NBD) since this server opened the session; a rate is the difference of two readings',
            },
          ),
        },
        { additionalProperties: false },
      ),
    ),
    overlayFreeBytes: Type.Union([Type.Integer(), Type.Null()], { description: "free bytes of the file system holding the session's overlays" }),
    overlayTotalBytes: Type.Union([Type.Integer(), Type.Null()], { description: 'the size of that file system' }),
    vm: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'the VM Lifeboat booted for the session' })),
    migration: Type.Optional(Type.Ref('Migration')),
  },
  { $id: 'Session', additionalProperties: false },
);
const CacheCounts = {
  budgetBytes: Type.Integer({ minimum: 0 }),
  usedBytes: Type.Integer({ minimum: 0 }),
  blocks: Type.Integer({ minimum: 0 }),
  hits: Type.Integer({ minimum: 0 }),
  misses: Type.Integer({ minimum: 0 }),
};
/** The caches of decoded blocks of one repository's sessions (memory, and local storage across restarts). */
export const SessionCaches = Type.Object(
  {
    repo: Name,
    memory: Type.Object(CacheCounts, { additionalProperties: false }),
    disk: Type.Union([
      Type.Object(
        {
          ...CacheCounts,
          dir: Type.String(),
          damaged: Type.Integer({ minimum: 0, description: 'files that failed their checksum and were removed' }),
          written: Type.Integer({ minimum: 0 }),
          skipped: Type.Integer({ minimum: 0, description: 'decoded blocks not kept (too many writes pending, or a write failed)' }),
          mismatched: Type.Integer({ minimum: 0, description: 'decoded blocks not kept because their SHA-256 is not the digest their backup file records' }),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ]),
    diskOff: Type.Optional(Type.String({ description: 'why there is no disk cache' })),
  },
  { additionalProperties: false },
);
export const SessionList = Type.Object({ sessions: Type.Array(Type.Ref('Session')), caches: Type.Array(SessionCaches) }, { additionalProperties: false });
export const SessionStartBody = Type.Object(
  {
    repo: Name,
    job: Name,
    point: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'an id, a unique prefix, or latest (default)' })),
    name: Type.Optional(Name),
    disks: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 64 })),
    boot: Type.Optional(
      Type.Object(
        { accel: Type.Optional(literals(['kvm', 'tcg'])), network: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export const SessionQuery = Type.Object({ repo: Type.Optional(Name) }, { additionalProperties: false });
export const AddDiskBody = Type.Object(
  { size: Type.Integer({ minimum: 512, multipleOf: 512, description: 'bytes' }), name: Type.Optional(Name) },
  { additionalProperties: false },
);
export const MigrateBody = Type.Object(
  {
    to: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, pattern: '^/', description: 'an absolute folder on the server' })),
    format: Type.Optional(literals(['raw', 'qcow2'])),
    rate: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'bytes per second' })),
    finish: Type.Optional(Type.Boolean({ description: 'run the final pass (waits for the copy)' })),
    force: Type.Optional(Type.Boolean({ description: 'with finish: close NBD connections and refuse writes instead of refusing to finish' })),
  },
  { additionalProperties: false },
);

/** Routes that answer with a stream of Server-Sent Events. */
export const EVENT_STREAM = {
  200: {
    description: 'Server-Sent Events (text/event-stream); a comment line every few seconds keeps the connection open',
    content: { 'text/event-stream': { schema: Type.String() } },
  },
} as const;
