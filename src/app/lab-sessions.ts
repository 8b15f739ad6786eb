import { join } from 'node:path';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import type { LabSession, LabSessions } from '../lab/types.js';
import { callControl } from './control-api.js';
import type { InstantRecovery, SessionInfo } from '../recovery/index.js';

/** Where the labs of a repository's SureBackup runs and sandboxes keep their records: one folder, so each removes what the other's killed runs left. */
export const labStateDir = (repoRoot: string): string => join(repoRoot, 'surebackup', 'labs');

/**
 * Deadlines of the server's answers: a session starts (exports, overlays, QEMU spawned) in seconds and stops
 * (QEMU ended, TERM then KILL) in well under a minute; a server that takes longer is stopped or hung, and a
 * run, or its teardown, must not wait for it for ever.
 */
const START_MS = 180_000;
const STOP_MS = 90_000;
const LIST_MS = 30_000;

/**
 * The lab's VMs as instant sessions of the repository's running `serve`,
 * over its local control API: booted from NBD exports of the point, writes
 * into the session's overlay, never into a backup file.
 */
export function controlApiLabSessions(repoRoot: string, opts: { deadlineMs?: number } = {}): LabSessions {
  const within = (ms: number): { timeoutMs: number } => ({ timeoutMs: opts.deadlineMs ?? ms });
  return {
    async start(req): Promise<LabSession> {
      const s = await callControl<SessionInfo>(
        repoRoot,
        'POST',
        '/sessions',
        { job: req.job, point: req.point, name: req.name, boot: { accel: req.accel, network: req.network } },
        within(START_MS),
      );
      if (!s.vm) throw new LifeboatError('LFB_ERR_VM', `the server started session ${s.name} without its VM; is it an older \`lifeboat serve\`? Restart it`);
      return { name: s.name, pointId: s.pointId, serialLog: s.vm.serialLog, qmpSocket: s.vm.qmpSocket, qgaSocket: s.vm.qgaSocket, pid: s.vm.pid };
    },
    async stop(name): Promise<void> {
      try {
        await callControl(repoRoot, 'DELETE', `/sessions/${encodeURIComponent(name)}`, undefined, within(STOP_MS));
      } catch (err) {
        // Already gone is what stopping wants; a server that is not there (also NotFound) has stopped nothing.
        if (isLifeboatError(err, 'LFB_ERR_SESSION_NOT_FOUND')) return;
        throw err;
      }
    },
    async list(): Promise<string[]> {
      return (await callControl<SessionInfo[]>(repoRoot, 'GET', '/sessions', undefined, within(LIST_MS))).map((s) => s.name);
    },
  };
}

/**
 * The lab's VMs as instant sessions of this process's own InstantRecovery
 * (the server running a SureBackup job): the same sessions the control API
 * starts, without a round trip over HTTP to itself.
 */
export function inProcessLabSessions(ir: InstantRecovery): LabSessions {
  return {
    async start(req): Promise<LabSession> {
      const s = await ir.start(req.job, req.point, { name: req.name, boot: { accel: req.accel, network: req.network } });
      if (!s.vm) throw new LifeboatError('LFB_ERR_VM', `session ${s.name} started without its VM`);
      return { name: s.name, pointId: s.pointId, serialLog: s.vm.serialLog, qmpSocket: s.vm.qmpSocket, qgaSocket: s.vm.qgaSocket, pid: s.vm.pid };
    },
    async stop(name): Promise<void> {
      try {
        await ir.stop(name);
      } catch (err) {
        if (isLifeboatError(err, 'LFB_ERR_SESSION_NOT_FOUND')) return;
        throw err;
      }
    },
    list: async (): Promise<string[]> => ir.list().map((s) => s.name),
  };
}
