import { mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { LifeboatError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { nodeName } from '../qemu/index.js';
import type { Open } from './instant-recovery.js';
import { qemuImg } from '../core/qemu-img.js';
import { copyPass, finishCopy, loadMigration, saveMigration, targetPath, type MigrationFormat, type MigrationState } from './migration.js';

interface Running {
  readonly state: MigrationState;
  stopped: boolean;
  task: Promise<void> | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Moving sessions to production storage (`instant migrate`). A VM that
 * Lifeboat booted is moved by QEMU itself (blockdev-mirror, sync full, then
 * job-complete: the guest keeps running and ends on the new files). Any
 * other session is copied by Lifeboat while it keeps serving, then finished
 * with a final pass once the client has detached. Both record their progress
 * in the session folder and carry on after a server restart.
 */
export class SessionMigrations {
  private readonly running = new Map<string, Running>();

  constructor(
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  state(o: Open): MigrationState | undefined {
    return this.running.get(o.rec.name)?.state;
  }

  async start(o: Open, opts: { to: string; format: MigrationFormat; rateBytesPerSec: number | null; vmName: string }): Promise<MigrationState> {
    const existing = this.running.get(o.rec.name);
    if (existing && existing.state.state !== 'failed') {
      if (existing.state.to !== resolve(opts.to))
        throw new LifeboatError('LFB_ERR_MIGRATION', `session ${o.rec.name} is already migrating to ${existing.state.to}`);
      return existing.state;
    }
    const to = resolve(opts.to);
    await mkdir(to, { recursive: true });
    const mode = o.vm?.running ? 'mirror' : 'copy';
    const disks = o.rec.disks.map((d) => {
      const target = targetPath(to, opts.vmName, d.name, opts.format);
      return { name: d.name, size: d.size, target, copyPath: mode === 'copy' && opts.format === 'qcow2' ? `${target}.raw-partial` : target, copied: 0 };
    });
    for (const d of disks) {
      if (existsSync(d.target) || existsSync(d.copyPath))
        throw new LifeboatError('LFB_ERR_TARGET_EXISTS', `${d.target} already exists; choose another --to or remove it`);
    }
    const state: MigrationState = {
      version: 1,
      to,
      format: opts.format,
      mode,
      state: 'copying',
      rateBytesPerSec: opts.rateBytesPerSec,
      disks,
      startedAt: this.clock.now().toISOString(),
    };
    await saveMigration(o.rec.dir, state);
    this.run(o, state);
    return state;
  }

  /** After a restart: a migration that was copying carries on where its last checkpoint left it. */
  async resume(o: Open): Promise<void> {
    const state = await loadMigration(o.rec.dir);
    if (!state) return;
    if (state.state === 'copying' || state.state === 'finishing') {
      if (state.state === 'finishing') state.state = 'synced';
      this.logger.info('instant recovery: resuming a migration', { session: o.rec.name, to: state.to });
      this.run(o, state);
    } else {
      // A finished copy migration: production has the disks, the session must not take writes it would never see.
      if (state.mode === 'copy' && state.state === 'done')
        for (const ov of o.overlays) await ov.seal(`session ${o.rec.name} was migrated to ${state.to}: its disks take no more writes`);
      this.running.set(o.rec.name, { state, stopped: false, task: undefined });
    }
  }

  private run(o: Open, state: MigrationState): void {
    const r: Running = { state, stopped: false, task: undefined };
    this.running.set(o.rec.name, r);
    const work = state.mode === 'mirror' ? this.mirror(o, r) : state.state === 'copying' ? this.copy(o, r) : Promise.resolve();
    r.task = work.catch(async (err: unknown) => {
      if (r.stopped) return;
      state.state = 'failed';
      state.problem = err instanceof Error ? err.message : String(err);
      this.logger.error('instant recovery: migration failed', { session: o.rec.name, problem: state.problem });
      await saveMigration(o.rec.dir, state).catch(() => undefined);
    });
  }

  private async copy(o: Open, r: Running): Promise<void> {
    const s = r.state;
    for (let i = 0; i < s.disks.length; i++) {
      await copyPass(o.overlays[i]!, s.disks[i]!, {
        rateBytesPerSec: s.rateBytesPerSec,
        stopped: () => r.stopped,
        checkpoint: () => saveMigration(o.rec.dir, s),
      });
      if (r.stopped) return;
    }
    s.state = 'synced';
    await saveMigration(o.rec.dir, s);
  }

  /**
   * The final pass of a copy migration, for when the client has detached:
   * what the overlay holds is copied again, then the files are durable (and
   * converted to qcow2 if asked). Waits for the first pass if it still runs.
   */
  async finish(o: Open, hooks: { beforeFinalCopy?: () => Promise<void>; afterFailedCopy?: () => void } = {}): Promise<MigrationState> {
    const r = this.running.get(o.rec.name);
    if (!r)
      throw new LifeboatError('LFB_ERR_MIGRATION', `session ${o.rec.name} is not migrating; start with \`lifeboat instant migrate ${o.rec.name} --to <dir>\``);
    const s = r.state;
    if (s.mode === 'mirror') {
      await r.task;
      return s;
    }
    if (s.state === 'copying') await r.task;
    if (s.state === 'done') return s;
    if (s.state !== 'synced')
      throw new LifeboatError(
        'LFB_ERR_MIGRATION',
        `the migration of ${o.rec.name} is ${s.state}${s.problem ? ` (${s.problem})` : ''}; run \`instant migrate\` again to resume it`,
      );
    await hooks.beforeFinalCopy?.();
    try {
      s.state = 'finishing';
      await saveMigration(o.rec.dir, s);
      for (let i = 0; i < s.disks.length; i++) {
        await o.overlays[i]!.flush();
        await finishCopy(o.overlays[i]!, s.disks[i]!, s.format);
      }
    } catch (err) {
      // The copy made so far stays; the session takes writes again and a later --finish copies anew.
      s.state = 'synced';
      await saveMigration(o.rec.dir, s).catch(() => undefined);
      hooks.afterFailedCopy?.();
      throw err;
    }
    s.state = 'done';
    s.finishedAt = this.clock.now().toISOString();
    await saveMigration(o.rec.dir, s);
    return s;
  }

  /** A failed migration runs again from its checkpoints. */
  retry(o: Open): MigrationState | undefined {
    const r = this.running.get(o.rec.name);
    if (!r || r.state.state !== 'failed') return undefined;
    r.state.state = r.state.mode === 'copy' && r.state.disks.every((d) => d.copied === d.size) ? 'synced' : 'copying';
    delete r.state.problem;
    this.run(o, r.state);
    return r.state;
  }

  private async mirror(o: Open, r: Running): Promise<void> {
    const s = r.state;
    const qmp = await o.vm!.qmp();
    const jobId = (i: number): string => `lfb-migrate${i}`;
    const prodNode = (i: number): string => `lfb-prod${i}`;
    const inserted = async (): Promise<Map<string, string>> => {
      const blocks = await qmp.execute<{ qdev?: string; inserted?: { 'node-name'?: string } }[]>('query-block');
      return new Map(blocks.map((b) => [b.qdev ?? '', b.inserted?.['node-name'] ?? '']));
    };
    const onProd = async (i: number): Promise<boolean> =>
      [...(await inserted()).entries()].some(([qdev, node]) => qdev.includes(`dev-${nodeName(i)}`) && node === prodNode(i));
    let jobs = await qmp.execute<{ device: string; len: number; offset: number; ready: boolean }[]>('query-block-jobs');
    for (let i = 0; i < s.disks.length; i++) {
      const d = s.disks[i]!;
      if (jobs.some((j) => j.device === jobId(i)) || (await onProd(i))) continue;
      if (!existsSync(d.target)) await qemuImg(['create', '-q', '-f', s.format, d.target, String(d.size)], 'migration');
      try {
        await qmp.execute('blockdev-add', { driver: s.format, 'node-name': prodNode(i), file: { driver: 'file', filename: d.target } });
      } catch (err) {
        if (!(err instanceof Error && /duplicate|already/i.test(err.message))) throw err;
      }
      await qmp.execute('blockdev-mirror', { 'job-id': jobId(i), device: nodeName(i), target: prodNode(i), sync: 'full' });
    }
    // Wait until every mirror is in step with its guest, then pivot them all.
    for (;;) {
      if (r.stopped) return;
      jobs = await qmp.execute('query-block-jobs');
      for (let i = 0; i < s.disks.length; i++) {
        const j = jobs.find((x) => x.device === jobId(i));
        if (j) s.disks[i]!.copied = Math.min(s.disks[i]!.size, Math.round((j.offset / Math.max(1, j.len)) * s.disks[i]!.size));
      }
      const mine = jobs.filter((j) => j.device.startsWith('lfb-migrate'));
      if (mine.length > 0 && mine.every((j) => j.ready)) break;
      if (mine.length === 0) break;
      await saveMigration(o.rec.dir, s);
      await sleep(300);
    }
    for (const j of jobs.filter((x) => x.device.startsWith('lfb-migrate'))) await qmp.execute('job-complete', { id: j.device });
    for (let k = 0; k < 600; k++) {
      const left = (await qmp.execute<{ device: string }[]>('query-block-jobs')).filter((j) => j.device.startsWith('lfb-migrate'));
      if (left.length === 0) break;
      await sleep(100);
    }
    for (let i = 0; i < s.disks.length; i++) {
      if (!(await onProd(i)))
        throw new LifeboatError('LFB_ERR_MIGRATION', `disk ${s.disks[i]!.name}: the mirror ended but the VM is not on ${s.disks[i]!.target}`);
      s.disks[i]!.copied = s.disks[i]!.size;
    }
    s.state = 'done';
    s.finishedAt = this.clock.now().toISOString();
    await saveMigration(o.rec.dir, s);
    this.logger.info('instant recovery: VM moved to production storage', { session: o.rec.name, to: s.to });
  }

  /** Stops background work (server shutdown or session stop); recorded progress stays. */
  async cancel(o: Open): Promise<void> {
    const r = this.running.get(o.rec.name);
    if (!r) return;
    r.stopped = true;
    await r.task;
    this.running.delete(o.rec.name);
  }
}
