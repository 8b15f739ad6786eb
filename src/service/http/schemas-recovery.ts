/** The API's recovery: retention plans, verify, restore, and instant-recovery sessions with their caches and migrations. */
import { Type } from 'typebox';
import { Name, literals, nullable } from './schemas-common.js';

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
