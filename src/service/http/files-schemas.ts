/** File-level recovery's shapes in the API (src/service/http/files.ts). */
import { Type } from 'typebox';
import { Name } from './schemas.js';

const Time = Type.String({ format: 'date-time' });
const PointRef = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$', description: 'a point id (or a unique prefix of one), or latest' });
const GuestPathText = Type.String({
  minLength: 1,
  maxLength: 4096,
  description: 'a file system id and an absolute path in it, e.g. disk0p2:/etc/fstab or vg0/root:/home (a plain /path: the point has one file system)',
});

export const FilesParams = Type.Object({ repo: Name, job: Name, point: PointRef }, { additionalProperties: false });
export const FilesQuery = Type.Object({ path: Type.Optional(GuestPathText) }, { additionalProperties: false });
export const DownloadQuery = Type.Object({ path: GuestPathText }, { additionalProperties: false });
export const FindQuery = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 255, description: 'a shell glob matched against each name (find -name)' }),
    path: Type.Optional(GuestPathText),
  },
  { additionalProperties: false },
);

export const FileVolume = Type.Object(
  {
    id: Type.String({ description: 'disk0, disk0p2, vg0/root: the prefix of paths in it' }),
    kind: Type.Enum(['disk', 'partition', 'lvm-volume']),
    type: Type.Optional(Type.String({ description: 'the file system type, or the partition table of a disk (gpt, msdos)' })),
    size: Type.Integer({ minimum: 0 }),
    label: Type.Optional(Type.String()),
    mounted: Type.Boolean({ description: 'a readable file system, browsable' }),
    problem: Type.Optional(Type.String({ description: 'why a file system did not mount' })),
  },
  { additionalProperties: false },
);

export const FileEntryView = Type.Object(
  {
    name: Type.String(),
    path: Type.String({ description: 'the guest path, <fs id>:/…' }),
    type: Type.Enum(['file', 'directory', 'symlink', 'block-device', 'char-device', 'fifo', 'socket']),
    size: Type.Integer({ minimum: 0 }),
    mode: Type.Integer({ minimum: 0, maximum: 0o7777, description: 'permission bits with setuid, setgid and sticky (e.g. 416 = 0640)' }),
    uid: Type.Integer({ minimum: 0 }),
    gid: Type.Integer({ minimum: 0 }),
    mtime: Time,
    target: Type.Optional(Type.String({ description: "a symlink's target" })),
  },
  { additionalProperties: false },
);

export const FilesReply = Type.Object(
  {
    pointId: Type.String(),
    volumes: Type.Array(FileVolume),
    path: Type.Optional(Type.String({ description: 'the listed folder (or file), when ?path was given' })),
    entries: Type.Optional(Type.Array(FileEntryView)),
  },
  { additionalProperties: false },
);

export const FindReply = Type.Object({ pointId: Type.String(), paths: Type.Array(Type.String()) }, { additionalProperties: false });
export const CloseReply = Type.Object({ closed: Type.Boolean({ description: 'false: no session of the point was open' }) }, { additionalProperties: false });

export const FileSessionView = Type.Object(
  {
    repo: Type.String(),
    job: Type.String(),
    pointId: Type.String(),
    state: Type.Enum(['opening', 'open']),
    openedAt: Time,
    lastUsedAt: Time,
    idleDeadline: Type.Optional(Time),
    requests: Type.Integer({ minimum: 0, description: 'requests using it now' }),
  },
  { additionalProperties: false },
);
export const FileSessionList = Type.Object(
  { sessions: Type.Array(FileSessionView), idleTimeoutSeconds: Type.Number(), max: Type.Integer() },
  { additionalProperties: false },
);

export const DOWNLOAD_RESPONSE = {
  200: {
    description: 'a file (application/octet-stream) or a folder as a GNU tar archive (application/x-tar), streamed',
    content: {
      'application/octet-stream': { schema: Type.String({ contentMediaType: 'application/octet-stream' }) },
      'application/x-tar': { schema: Type.String({ contentMediaType: 'application/x-tar' }) },
    },
  },
} as const;
