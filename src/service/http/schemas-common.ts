/**
 * The API's shared shapes: errors, names and route parameters, accounts and
 * repositories, and the helpers the other schema files build with.
 */
import { Type, type TSchema } from 'typebox';
import { CHANGE_METHODS, RUN_STATES, RUN_TRIGGERS, USER_ROLES } from '../../catalog/catalog.js';

export const literals = Type.Enum;
export const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
export const Time = Type.String({ format: 'date-time' });

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
          capacityBytes: Type.Optional(
            Type.Integer({
              description: "a repository with a capacity tier: what the job's recorded copies take on its capacity extent (moved files are not in bytes)",
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    bytes: Type.Integer({ description: "the backup files in the repository's own folder or bucket" }),
    capacityBytes: Type.Optional(Type.Integer({ description: 'a repository with a capacity tier: what its recorded copies take on the capacity extent' })),
    freeBytes: Type.Integer({ description: 'what an unprivileged writer can still use, as df shows it' }),
    totalBytes: Type.Integer(),
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
