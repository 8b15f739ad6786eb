/** The SureBackup reports' shapes in the API (src/service/http/surebackup.ts). */
import { Type } from 'typebox';
import { Name } from './schemas.js';

const Time = Type.String({ format: 'date-time' });
export const ReportId = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$', description: "the report's id: its lab's id" });

export const ReportParams = Type.Object({ repo: Name, id: ReportId }, { additionalProperties: false });
export const ScreenshotParams = Type.Object(
  { repo: Name, id: ReportId, index: Type.Integer({ minimum: 0, maximum: 1023, description: "the VM's place in the report's vms, from 0" }) },
  { additionalProperties: false },
);
export const ReportListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
    before: Type.Optional(ReportId),
  },
  { additionalProperties: false },
);

const vmFacts = {
  job: Type.String(),
  point: Type.String({ description: 'the point it booted (the asked-for text, e.g. latest, when its session never started)' }),
  name: Type.String({ description: "the VM's name on the lab network" }),
  ip: Type.String(),
  booted: Type.Boolean({ description: 'it passed its heartbeat' }),
  seconds: Type.Number({ description: 'from the start of its session to the heartbeat (or the timeout)' }),
};

export const ReportSummary = Type.Object(
  {
    id: ReportId,
    repo: Name,
    startedAt: Time,
    endedAt: Time,
    ok: Type.Boolean({ description: 'every VM booted and passed every test' }),
    runId: Type.Optional(Type.Integer({ description: "the SureBackup job's run that made it (absent for a `surebackup run` of the CLI)" })),
    vms: Type.Array(
      Type.Object(
        {
          ...vmFacts,
          passed: Type.Integer({ minimum: 0, description: 'tests that passed' }),
          failed: Type.Integer({ minimum: 0, description: 'tests that failed' }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const ReportPage = Type.Object(
  {
    reports: Type.Array(ReportSummary),
    next: Type.Union([ReportId, Type.Null()], { description: 'pass as before= for the next page; null on the last' }),
  },
  { additionalProperties: false },
);

export const LabTest = Type.Object(
  {
    name: Type.String({ description: 'heartbeat, ping, tcp:<port>, http:<url>, script:<file>, verify, screenshot' }),
    ok: Type.Boolean(),
    detail: Type.String(),
    ms: Type.Number(),
  },
  { additionalProperties: false },
);

export const ReportDetail = Type.Object(
  {
    id: ReportId,
    repo: Name,
    startedAt: Time,
    endedAt: Time,
    ok: Type.Boolean(),
    reportDir: Type.String({ description: 'the folder of report.json and the screenshots on the server' }),
    runId: Type.Optional(Type.Integer({ description: "the SureBackup job's run that made it (absent for a `surebackup run` of the CLI)" })),
    vms: Type.Array(
      Type.Object(
        {
          ...vmFacts,
          note: Type.Optional(Type.String({ description: 'why it started without the VM it waits for' })),
          tests: Type.Array(LabTest),
          screenshot: Type.Boolean({ description: 'GET …/vms/{index}/screenshot serves its PNG' }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const PointResults = Type.Object(
  {
    points: Type.Array(
      Type.Object(
        {
          point: Type.String(),
          lastTestedAt: Time,
          ok: Type.Boolean({ description: 'every VM booted from the point in that report passed every test' }),
          reportId: ReportId,
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const PNG_RESPONSE = {
  200: {
    description: "the VM's screen at the end of the run (PNG)",
    content: { 'image/png': { schema: Type.String({ contentMediaType: 'image/png' }) } },
  },
} as const;

export const SureBackupJobParams = Type.Object({ repo: Name, name: Name }, { additionalProperties: false });

export const SureBackupJobView = Type.Object(
  {
    name: Name,
    vms: Type.Array(Type.String(), { description: '<job>[@<point>] in boot order' }),
    waitFor: Type.Array(Type.String()),
    ports: Type.Array(Type.String(), { description: '<job>:<port>' }),
    http: Type.Array(Type.String(), { description: '<job>:<url>' }),
    scripts: Type.Array(Type.String()),
    serialPattern: Type.Union([Type.String(), Type.Null()]),
    timeoutS: Type.Number({ description: 'seconds each VM has to pass its heartbeat' }),
    accel: Type.Union([Type.Literal('kvm'), Type.Literal('tcg'), Type.Null()], { description: 'null: kvm when usable, else tcg' }),
    everyPoint: Type.Boolean({ description: 'each VM without @point boots the oldest point of its job not tested yet' }),
    schedule: Type.Union([Type.String(), Type.Null()]),
    window: Type.Union([Type.String(), Type.Null()]),
    retries: Type.Integer(),
    retryDelay: Type.String(),
    after: Type.Union([Type.String(), Type.Null()], { description: 'the backup job whose successful runs queue this one' }),
    disabled: Type.Boolean(),
    nextRunAt: Type.Union([Time, Type.Null()], { description: 'the next scheduled run (null without an enabled schedule)' }),
    lastRun: Type.Union(
      [
        Type.Object(
          {
            id: Type.Integer(),
            state: Type.String(),
            queuedAt: Time,
            endedAt: Type.Union([Time, Type.Null()]),
            reportId: Type.Union([Type.String(), Type.Null()]),
            errorCode: Type.Union([Type.String(), Type.Null()]),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ],
      { description: "the job's newest run (queued or running ones too)" },
    ),
  },
  { additionalProperties: false },
);

export const SureBackupJobList = Type.Object({ jobs: Type.Array(SureBackupJobView) }, { additionalProperties: false });
