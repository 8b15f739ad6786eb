/** Copy jobs' shapes in the API (src/service/http/copies.ts). */
import { Type, type TSchema } from 'typebox';
import { Name, RunState } from './schemas.js';

const Time = Type.String({ format: 'date-time' });
const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const CopyJobParams = Type.Object({ repo: Name, name: Name }, { additionalProperties: false });

export const CopyJobView = Type.Object(
  {
    name: Name,
    job: Type.String({ description: 'the job of this repository whose points are copied' }),
    toRepo: Type.String({ description: "the target repository's folder (the copied points are its job of the same name)" }),
    retainPoints: Type.Integer({ minimum: 1, description: 'points kept on the target (when retainDays is null)' }),
    retainDays: nullable(Type.Integer({ minimum: 1, description: 'days of points kept on the target (at least 3 points)' })),
    gfs: nullable(Type.Object({ weekly: Type.Integer(), monthly: Type.Integer(), yearly: Type.Integer() }, { additionalProperties: false })),
    schedule: nullable(Type.String({ description: 'cron: when the server runs the copy by itself' })),
    window: nullable(Type.String({ description: 'the daily window it runs in' })),
    after: nullable(Type.String({ description: 'the backup job whose successful runs queue this one' })),
    createdAt: Time,
    nextRunAt: nullable(Time),
    lastRun: Type.Union(
      [
        Type.Object(
          {
            id: Type.Integer(),
            state: RunState,
            queuedAt: Time,
            endedAt: nullable(Time),
            bytesStored: Type.Integer({ description: 'bytes copied (stored blocks, as they are on the target)' }),
            pointId: nullable(Type.String({ description: "the newest point it made on the target (the target's id)" })),
            errorCode: nullable(Type.String()),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ],
      { description: "the copy job's newest run (queued or running ones too); null before its first run in this server's catalog" },
    ),
  },
  { additionalProperties: false },
);

export const CopyJobList = Type.Object({ copies: Type.Array(CopyJobView) }, { additionalProperties: false });
