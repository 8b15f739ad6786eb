import { folderRepositoryRoot } from '../../repository/location.js';
import { resolve, join } from 'node:path';
import { callControl } from '../../app/control-api.js';
import { controlApiLabSessions, labStateDir } from '../../app/lab-sessions.js';
import { LifeboatError } from '../../core/errors.js';
import { newLabId } from '../../lab/lab-plan.js';
import { reportIdOf, runSureBackup, type SureBackupResult } from '../../lab/surebackup.js';
import { parseLabGroup } from '../../lab/lab-group.js';
import type { LabTestResult, LabVmSpec } from '../../lab/types.js';
import type { Command, CommandContext } from '../command.js';
import { DEFAULT_BOOT_TIMEOUT_S, labBootFlags } from '../lab-flags.js';
import { JSON_OPTION, REPO_OPTION, optionalString, requireString } from '../command.js';

export const surebackupRun: Command = {
  name: 'surebackup run',
  usage:
    'surebackup run --repo <dir> --vm <job>[@<point>] [--vm …] [--wait-for <job>]… [--serial-pattern REGEX] [--port <job>:<port>]… [--http <job>:<url>]… [--script <file>]… [--timeout <s>] [--accel kvm|tcg] [--report-dir <dir>] [--json]',
  summary: 'boot restore points from the backup in an isolated lab, test them (heartbeat, ping, ports, HTTP, scripts, verify), report, remove the lab',
  positionals: [],
  options: {
    repo: REPO_OPTION,
    vm: { type: 'string', multiple: true, description: 'a VM of the group, in boot order: <job> (latest point) or <job>@<point id>' },
    'wait-for': {
      type: 'string',
      multiple: true,
      description: 'later VMs start only once this job passed its heartbeat (a DNS or database server)',
      defaultText: 'all start at once',
    },
    'serial-pattern': {
      type: 'string',
      description: 'regex on the serial console meaning "booted", for guests without the QEMU guest agent',
      defaultText: 'the guest agent only',
    },
    port: { type: 'string', multiple: true, description: '<job>:<port>: the TCP port must accept a connection from inside the lab', defaultText: 'none' },
    http: {
      type: 'string',
      multiple: true,
      description: "<job>:<url>: the URL must answer 2xx or 3xx from inside the lab; {ip} stands for the VM's address",
      defaultText: 'none',
    },
    script: {
      type: 'string',
      multiple: true,
      description: 'run for every VM inside the lab with VM_NAME, VM_IP, POINT_ID in its environment; exit 0 passes',
      defaultText: 'none',
    },
    timeout: { type: 'string', description: 'seconds each VM has to pass its heartbeat', defaultText: String(DEFAULT_BOOT_TIMEOUT_S) },
    accel: { type: 'string', description: 'kvm or tcg', defaultText: 'kvm when usable, else tcg' },
    'report-dir': { type: 'string', description: 'folder for report.json and the screenshots', defaultText: '<repo>/surebackup/<date>-<time>-<lab id>' },
    json: JSON_OPTION,
  },
  async run(ctx) {
    const repo = folderRepositoryRoot(requireString(ctx, 'repo'), 'SureBackup');
    const { accel } = labBootFlags(ctx);
    const vms = parseGroup(ctx);
    // The server must be up before anything is made: the lab's VMs are its sessions.
    await callControl(repo, 'GET', '/sessions');
    const labId = newLabId();
    const reportId = reportIdOf(ctx.service.clock.now(), labId);
    const reportDirText = optionalString(ctx, 'report-dir');
    const reportDir = reportDirText === undefined ? join(repo, 'surebackup', reportId) : resolve(reportDirText);
    let verifying: Promise<void> = Promise.resolve();
    // ctx.signal: SIGINT and SIGTERM (main catches them for this command) stop the run, which removes its lab first.
    const report = await runSureBackup({
      sessions: controlApiLabSessions(repo),
      vms,
      stateDir: labStateDir(repo),
      reportDir,
      labId,
      reportId,
      ...(accel !== undefined ? { accel } : {}),
      verify: (job, pointId) => {
        // One verify at a time: each rewrites its job's health record, and two VMs may be points of one job.
        const mine = verifying.then(() => verifyPoint(ctx, repo, job, pointId));
        verifying = mine.then(
          () => undefined,
          () => undefined,
        );
        return mine;
      },
      onProgress: (line) => ctx.progress(line),
      signal: ctx.signal,
      clock: ctx.service.clock,
    });
    await recordReport(repo, report);
    if (ctx.values['json'] === true) ctx.out(JSON.stringify(report));
    else for (const line of describe(report)) ctx.out(line);
    if (!report.ok) {
      const bad = report.vms.filter((v) => !v.booted || v.tests.some((t) => !t.ok)).map((v) => v.job);
      throw new LifeboatError('LFB_ERR_SUREBACKUP_FAILED', `SureBackup found failed tests for ${bad.join(', ')}; see ${join(reportDir, 'report.json')}`, {
        details: { reportDir, failed: bad },
      });
    }
  },
};

/** The group from --vm, --wait-for, --port, --http, --script, --serial-pattern, --timeout (the rules SureBackup jobs share: src/lab/lab-group.ts). */
function parseGroup(ctx: CommandContext): LabVmSpec[] {
  const list = (name: string): string[] => (ctx.values[name] as string[] | undefined) ?? [];
  const { bootTimeoutS, serialPattern } = labBootFlags(ctx);
  return parseLabGroup({
    vms: list('vm'),
    waitFor: list('wait-for'),
    ports: list('port'),
    http: list('http'),
    scripts: list('script'),
    bootTimeoutS,
    serialPattern,
  });
}

/** Hands the report to the server for its catalog (the API and the console show it); a failure is a warning: the run's outcome stands. */
async function recordReport(repo: string, report: SureBackupResult): Promise<void> {
  try {
    await callControl(repo, 'POST', '/surebackup/reports', report);
  } catch (err) {
    process.stderr.write(
      `lifeboat: warning: the server did not record the report (${err instanceof Error ? err.message : String(err)}); it is in ${report.reportDir}\n`,
    );
  }
}

/** The app's verify of one point (read every block it needs, check each SHA-256), as a lab test. */
async function verifyPoint(ctx: CommandContext, repo: string, job: string, pointId: string): Promise<LabTestResult> {
  const started = performance.now();
  const r = await ctx.service.verify(repo, job, { point: pointId, all: false });
  const ms = Math.round(performance.now() - started);
  if (r.problems.length === 0) return { name: 'verify', ok: true, detail: `${r.blocks} stored blocks of point ${pointId} read and checked`, ms };
  const first = r.problems[0]!;
  return { name: 'verify', ok: false, detail: `${r.problems.length} problem(s), first: ${first.file}: ${first.message} [${first.code}]`, ms };
}

/** The readable report. */
export function describe(r: SureBackupResult): string[] {
  const lines = [`SureBackup report ${r.id}: ${r.ok ? 'every test passed' : 'FAILED'} (${r.vms.length} VM(s))`];
  for (const v of r.vms) {
    lines.push(`${v.job} @ ${v.point}  ${v.name} ${v.ip}  ${v.booted ? `booted in ${v.seconds} s` : 'did not boot'}`);
    if (v.note !== undefined) lines.push(`  note: ${v.note}`);
    for (const t of v.tests) lines.push(`  ${t.ok ? 'ok  ' : 'FAIL'}  ${t.name}: ${t.detail}`);
  }
  lines.push(`report: ${join(r.reportDir, 'report.json')}`);
  return lines;
}
