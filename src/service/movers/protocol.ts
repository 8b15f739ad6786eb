/**
 * What a data mover (`lifeboat mover`, on a host that reaches a job's disks)
 * and the server say to each other over the server's HTTP API. The mover
 * always asks; the server answers:
 *
 *   POST /api/v1/movers/{name}/poll                  the mover is alive; new tasks for it, and tasks to stop
 *   POST /api/v1/movers/{name}/tasks/{id}/progress   a task's progress; whether to stop it
 *   POST /api/v1/movers/{name}/tasks/{id}/result     a task's outcome or error
 *
 * Every message names the mover's session (a random id per process): a mover
 * started again under the same name is a new session, and the tasks of the
 * old one are given to others.
 */
import { Type, type Static } from 'typebox';

const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' });
const Session = Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$', description: "a random id of the mover's process" });

export const MoverParams = Type.Object({ name: Name }, { additionalProperties: false });
export const MoverTaskParams = Type.Object({ name: Name, id: Type.Integer({ minimum: 1 }) }, { additionalProperties: false });

export const PollBody = Type.Object(
  {
    session: Session,
    group: Type.Optional(Name),
    maxTasks: Type.Integer({ minimum: 1, maximum: 64 }),
    /** The tasks it is running now. */
    running: Type.Array(Type.Integer({ minimum: 1 }), { maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type PollBody = Static<typeof PollBody>;

export const MoverTask = Type.Object(
  {
    id: Type.Integer(),
    repo: Type.String({ description: 'the repository as the server knows it: the same on the mover (s3://…, or a shared folder)' }),
    job: Type.String(),
    run: Type.Integer({ description: 'the run it is part of' }),
    activeFull: Type.Optional(Type.Boolean()),
    acceptSourceChange: Type.Optional(Type.Boolean()),
    waitMs: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type MoverTask = Static<typeof MoverTask>;

export const StopOrder = Type.Object({ id: Type.Integer(), code: Type.String(), message: Type.String() }, { additionalProperties: false });
export type StopOrder = Static<typeof StopOrder>;

export const PollReply = Type.Object(
  {
    tasks: Type.Array(MoverTask),
    stop: Type.Array(StopOrder),
    timeoutMs: Type.Integer({
      description:
        'how long the server waits for a word from a mover before its tasks go to another: a mover that cannot reach the server for half of it stops them',
    }),
  },
  { additionalProperties: false },
);
export type PollReply = Static<typeof PollReply>;

export const ProgressBody = Type.Object(
  {
    session: Session,
    disk: Type.Integer({ minimum: 0 }),
    diskCount: Type.Integer({ minimum: 0 }),
    bytesDone: Type.Number({ minimum: 0 }),
    bytesTotal: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type ProgressBody = Static<typeof ProgressBody>;

export const ProgressReply = Type.Object({ stop: Type.Union([StopOrder, Type.Null()]) }, { additionalProperties: false });
export type ProgressReply = Static<typeof ProgressReply>;

const Bytes = Type.Number({ minimum: 0 });
/** What the run records of a backup's result (BackupResult; the rest is kept as it came). */
const BackupResultBody = Type.Object(
  {
    pointId: Type.String({ pattern: '^[0-9a-f]{6,64}$' }),
    kind: Type.String({ minLength: 1, maxLength: 32 }),
    file: Type.String({ minLength: 1, maxLength: 4096 }),
    bytesRead: Bytes,
    bytesStored: Bytes,
    steps: Type.Record(Type.String({ maxLength: 64 }), Type.Number({ minimum: 0 }), { maxProperties: 64 }),
  },
  { additionalProperties: true },
);
const PointChangesBody = Type.Object(
  {
    method: Type.Union([Type.String({ maxLength: 32 }), Type.Null()]),
    reason: Type.Union([Type.String({ maxLength: 4096 }), Type.Null()]),
    fellBack: Type.Boolean(),
  },
  { additionalProperties: false },
);

/** The backup's result and how its changes were found, as the mover's backup returned them (BackupOutcome). */
export const ResultBody = Type.Object(
  {
    session: Session,
    outcome: Type.Optional(Type.Object({ result: BackupResultBody, changes: PointChangesBody }, { additionalProperties: false })),
    error: Type.Optional(Type.Object({ code: Type.String({ maxLength: 64 }), message: Type.String({ maxLength: 8192 }) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type ResultBody = Static<typeof ResultBody>;

export const MoverView = Type.Object(
  {
    name: Type.String(),
    group: Type.Union([Type.String(), Type.Null()]),
    maxTasks: Type.Integer(),
    running: Type.Array(Type.Integer({ description: 'run ids' })),
    lastSeen: Type.String(),
    alive: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type MoverView = Static<typeof MoverView>;
