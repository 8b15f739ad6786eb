/**
 * Kill -9 at more than 100 random moments spread over every kind of run that
 * rewrites a repository: reverse-incremental runs, forever-forward merges,
 * synthetic fulls, transforms into rollbacks, retention (rollback, chain and
 * merge) and compacts. Most kills are LIFEBOAT_CRASH_AT=<random durable
 * step>; one in four is an outside SIGKILL after a random delay, which lands
 * between steps. After each kill: every point that existed before is there
 * (unless it was due to leave by retention) and restores bit-exact, the
 * health check passes, and the next run of the same kind succeeds.
 * The repository is encrypted (issue 18 asks the crash test of an encrypted
 * one): these are the runs that copy sealed blocks from file to file, and a
 * sealed block that a kill tore must never open. Plain repositories go
 * through the same kinds of kills in crash, transform, synthetic-full and
 * compact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, cli, randomBytes, readPoint, rng, serviceAt, tempDir, writeAt } from './helpers.js';

interface Job {
  readonly name: string;
  readonly args: readonly string[];
  readonly retain: number;
  readonly disk: string;
  content: Buffer;
  /** Point id → the disk's bytes at that point, oldest first. */
  readonly model: Map<string, Buffer>;
}

type Op = { readonly job: Job; readonly kind: 'backup' | 'compact' };

const BLOCK = 256 * 1024;

test(
  'crash: ≥100 random kills over reverse runs, merges, synthetic fulls, transforms, retention and compacts lose nothing',
  { timeout: 30 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const rand = rng(2026);
      const repo = join(dir, 'repo');
      // Every process of this file (its CLI runs, and this one for restores and verify) reads the password from here.
      await writeFile(join(dir, 'password'), 'kill me at any moment\n');
      process.env['LIFEBOAT_PASSWORD_FILE'] = join(dir, 'password');
      const init = await cli(['repo', 'init', repo, '--block-size', '256K', '--encrypt']);
      assert.equal(init.code, 0, init.stderr);
      const jobs: Job[] = [];
      const define = async (name: string, retain: number, args: string[]): Promise<void> => {
        const disk = join(dir, `${name}.img`);
        const content = randomBytes(rand, 16 * BLOCK + 4321);
        await writeFile(disk, content);
        const r = await cli(['job', 'create', name, '--repo', repo, '--disk', disk, '--retain-points', String(retain), ...args]);
        assert.equal(r.code, 0, r.stderr);
        jobs.push({ name, args, retain, disk, content, model: new Map() });
      };
      await define('rev', 4, ['--method', 'reverse']);
      await define('ff', 3, ['--method', 'forever']);
      await define('tr', 5, ['--synthetic-full', 'mon,tue,wed,thu,fri,sat,sun', '--transform-to-rollbacks']);
      await define('syn', 4, ['--synthetic-full', 'mon,wed,fri']);

      let day = 0;
      const now = (): string => new Date(Date.UTC(2026, 2, 1) + day * 86_400_000 + 20 * 3_600_000).toISOString();
      const mutate = async (job: Job): Promise<void> => {
        for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) {
          const len = 1000 + Math.floor(rand() * 2 * BLOCK);
          const off = Math.floor(rand() * (job.content.length - len));
          const chunk = rand() < 0.15 ? Buffer.alloc(len) : randomBytes(rand, len);
          chunk.copy(job.content, off);
          await writeAt(job.disk, chunk, off);
        }
      };
      const argsOf = (op: Op): string[] => (op.kind === 'backup' ? ['backup', op.job.name, '--repo', repo] : ['compact', op.job.name, '--repo', repo]);
      const report = join(dir, 'steps');
      /** A run to the end; returns how many durable steps it took. */
      const runWhole = async (op: Op): Promise<number> => {
        await writeFile(report, '0');
        const r = await cli(argsOf(op), { LIFEBOAT_NOW: now(), LIFEBOAT_CRASH_REPORT: report });
        assert.equal(r.code, 0, `${op.kind} ${op.job.name}: ${r.stderr}`);
        return Number(await readFile(report, 'utf8'));
      };
      const runKilledAtStep = async (op: Op, step: number): Promise<boolean> => {
        const r = await cli(argsOf(op), { LIFEBOAT_NOW: now(), LIFEBOAT_CRASH_AT: String(step) });
        if (r.signal !== 'SIGKILL') assert.equal(r.code, 0, r.stderr);
        return r.signal === 'SIGKILL';
      };
      const runKilledAfter = (op: Op, ms: number): Promise<boolean> =>
        new Promise((resolve, reject) => {
          const p = spawn(process.execPath, [BIN, ...argsOf(op)], { env: { ...process.env, LIFEBOAT_NOW: now() }, stdio: 'ignore' });
          const timer = setTimeout(() => p.kill('SIGKILL'), ms);
          p.on('error', reject);
          p.on('close', (code, signal) => {
            clearTimeout(timer);
            if (signal !== 'SIGKILL' && code !== 0) reject(new Error(`${op.kind} ${op.job.name} exited ${code}`));
            else resolve(signal === 'SIGKILL');
          });
        });

      /** The points retention may take in a run that adds one point: all but the newest retain-1. */
      const due = (job: Job): Set<string> => new Set([...job.model.keys()].slice(0, Math.max(0, job.model.size - (job.retain - 1))));
      const check = async (job: Job, mayGo: ReadonlySet<string>, where: string): Promise<void> => {
        const svc = serviceAt(now());
        const { points, state } = await svc.points(repo, job.name);
        assert.deepEqual(state.unavailable, [], `${where}: unavailable points`);
        for (const id of [...job.model.keys()]) {
          if (points.some((p) => p.id === id)) continue;
          assert.ok(mayGo.has(id), `${where}: point ${id} was lost`);
          job.model.delete(id);
        }
        // A point the killed run completed holds the disk as it was for that run.
        for (const p of points) if (!job.model.has(p.id)) job.model.set(p.id, Buffer.from(job.content));
        for (const p of points)
          assert.ok((await readPoint(repo, job.name, p.id)).equals(job.model.get(p.id)!), `${where}: point ${p.id} (${p.kind}) restores wrong bytes`);
        const v = await svc.verify(repo, job.name, { all: true });
        assert.deepEqual(v.problems, [], `${where}: verify --all`);
      };

      // Each job's first points, and how many steps each kind of run takes.
      const steps = new Map<string, number>();
      for (const job of jobs) {
        for (let i = 0; i < job.retain + 1; i++) {
          day += 1;
          await mutate(job);
          steps.set(`backup ${job.name}`, await runWhole({ job, kind: 'backup' }));
          await check(job, due(job), `setup of ${job.name}`);
        }
      }

      const ops: Op[] = [
        ...jobs.map((job) => ({ job, kind: 'backup' as const })),
        ...jobs.filter((j) => j.name === 'rev' || j.name === 'ff').map((job) => ({ job, kind: 'compact' as const })),
      ];
      const kills = new Map<string, number>();
      let total = 0;
      for (let round = 0; total < 110 && round < 400; round++) {
        const op = ops[Math.floor(rand() * ops.length)]!;
        const key = `${op.kind} ${op.job.name}`;
        const { job } = op;
        if (op.kind === 'backup') {
          day += 1;
          await mutate(job);
        }
        const mayGo = op.kind === 'backup' ? due(job) : new Set<string>();
        const outside = rand() < 0.25;
        const span = steps.get(key) ?? 30;
        const killed = outside
          ? await runKilledAfter(op, 150 + Math.floor(rand() * 600))
          : await runKilledAtStep(op, 1 + Math.floor(rand() * Math.max(1, span)));
        const where = `round ${round}, ${key} ${killed ? 'killed' : 'not killed'} (${outside ? 'outside kill' : 'at a step'})`;
        if (killed) {
          total += 1;
          kills.set(key, (kills.get(key) ?? 0) + 1);
        }
        await check(job, mayGo, where);
        // The next run of the same kind succeeds (a new day for a backup) and loses nothing either.
        if (op.kind === 'backup') {
          day += 1;
          await mutate(job);
        }
        const next = op.kind === 'backup' ? due(job) : new Set<string>();
        const n = await runWhole(op);
        if (op.kind === 'backup' || n > 5) steps.set(key, Math.max(n, op.kind === 'compact' ? (steps.get(key) ?? 0) : 0));
        await check(job, next, `${where}, then the next run`);
      }
      const summary = [...kills].map(([k, n]) => `${k}: ${n}`).join(', ');
      assert.ok(total >= 100, `only ${total} kills (${summary})`);
      for (const op of ops) assert.ok((kills.get(`${op.kind} ${op.job.name}`) ?? 0) >= 5, `few kills in ${op.kind} ${op.job.name}: ${summary}`);
      console.log(`kills: ${total} (${summary})`);
    } finally {
      delete process.env['LIFEBOAT_PASSWORD_FILE'];
      await cleanup();
    }
  },
);
