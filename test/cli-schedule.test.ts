import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, tempDir, type CliResult } from './helpers.js';

// The schedule settings of a job, through the real CLI: job create, job set, job show. No backups: no disk is read.
const ENV = { LIFEBOAT_NOW: '2026-06-01T08:00:00Z', TZ: 'UTC' };
let dir = '';
let repo = '';
let disk = '';
let cleanup = async (): Promise<void> => undefined;

function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

function fails(r: CliResult, exit: number, code: string, mentions?: string): void {
  assert.equal(r.code, exit, `expected exit ${exit}, got ${r.code}: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, new RegExp(`\\[${code}\\]`), r.stderr);
  if (mentions !== undefined) assert.ok(r.stderr.includes(mentions), `the error does not name ${mentions}: ${r.stderr}`);
}

const run = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => cli(args, { ...ENV, ...env });

interface ShownJob {
  schedule?: string;
  window?: string;
  retries: number;
  retryDelay: string;
  after?: string;
  disabled?: boolean;
  nextRunAt: string | null;
  timeZone: string;
}

async function show(job: string, env: Record<string, string> = {}): Promise<ShownJob> {
  return JSON.parse(ok(await run(['job', 'show', job, '--repo', repo, '--json'], env), `job show ${job}`)) as ShownJob;
}

async function jobJson(job: string): Promise<Record<string, unknown>> {
  return (JSON.parse(await readFile(join(repo, 'jobs', job, 'job.json'), 'utf8')) as { body: Record<string, unknown> }).body;
}

before(async () => {
  ({ dir, cleanup } = await tempDir('lifeboat-cli-schedule-'));
  repo = join(dir, 'repo');
  disk = join(dir, 'vm.img');
  await writeFile(disk, Buffer.alloc(1 << 20));
  ok(await run(['repo', 'init', repo]), 'repo init');
  ok(await run(['job', 'create', 'db', '--repo', repo, '--disk', disk]), 'job create db');
});

after(() => cleanup());

test('job create takes the schedule settings; job show prints them and the next fire time', async () => {
  const created = ok(
    await run([
      'job',
      'create',
      'web',
      '--repo',
      repo,
      '--disk',
      disk,
      '--schedule',
      '0 22 * * *',
      '--window',
      '22:00-6:00',
      '--retries',
      '5',
      '--retry-delay',
      '90m',
      '--after',
      'db',
    ]),
    'job create web',
  );
  assert.match(created, /scheduled "0 22 \* \* \*" in 22:00-06:00, after job db/);
  const j = await show('web');
  assert.deepEqual(
    [j.schedule, j.window, j.retries, j.retryDelay, j.after, j.disabled, j.nextRunAt, j.timeZone],
    ['0 22 * * *', '22:00-06:00', 5, '1h30m', 'db', undefined, '2026-06-01T22:00:00.000Z', 'UTC'],
  );
  // job.json keeps the canonical forms.
  const stored = await jobJson('web');
  assert.deepEqual([stored['window'], stored['retryDelay']], ['22:00-06:00', '1h30m']);
  const human = ok(await run(['job', 'show', 'web', '--repo', repo]), 'job show web');
  assert.match(human, /schedule: +0 22 \* \* \*$/m);
  assert.match(human, /window: +22:00-06:00$/m);
  assert.match(human, /retries: +5, 1h30m apart$/m);
  assert.match(human, /after: +job db succeeds$/m);
  assert.match(human, /enabled: +yes$/m);
  assert.match(human, /next run: +2026-06-01T22:00:00.000Z \(schedule in UTC\)$/m);
  // The server's time zone: 22:00 in Berlin is 20:00 UTC in June.
  assert.equal((await show('web', { TZ: 'Europe/Berlin' })).nextRunAt, '2026-06-01T20:00:00.000Z');
});

test('a job without schedule settings is shown with the defaults and no next run (as before schedules existed)', async () => {
  const j = await show('db');
  assert.deepEqual([j.schedule, j.window, j.retries, j.retryDelay, j.after, j.nextRunAt], [undefined, undefined, 3, '10m', undefined, null]);
  const stored = await jobJson('db');
  for (const key of ['schedule', 'window', 'retries', 'retryDelay', 'after', 'disabled']) assert.equal(stored[key], undefined, key);
  const human = ok(await run(['job', 'show', 'db', '--repo', repo]), 'job show db');
  assert.match(human, /schedule: +none \(runs only when asked\)$/m);
  assert.match(human, /next run: +none \(no schedule\)$/m);
  assert.match(human, /retries: +3, 10m apart$/m);
});

test('a seconds field: */5 * * * * * fires five seconds after now', async () => {
  ok(await run(['job', 'create', 'fast', '--repo', repo, '--disk', disk, '--schedule', '*/5 * * * * *']), 'job create fast');
  assert.equal((await show('fast')).nextRunAt, '2026-06-01T08:00:05.000Z');
});

test('job set changes, clears, disables and enables the schedule settings', async () => {
  ok(await run(['job', 'create', 'edit', '--repo', repo, '--disk', disk]), 'job create edit');
  const set = (...flags: string[]): Promise<CliResult> => run(['job', 'set', 'edit', '--repo', repo, ...flags]);
  const changed = ok(await set('--schedule', '0 */2 * * 1-5', '--window', '08:00-18:00', '--retry-delay', '30s', '--retries', '0'), 'job set');
  assert.match(changed, /schedule: none \(runs only when asked\) → 0 \*\/2 \* \* 1-5/);
  assert.match(changed, /window: any time → 08:00-18:00/);
  assert.match(changed, /retries: 3, 10m apart → 0, 30s apart/);
  let j = await show('edit');
  assert.deepEqual([j.schedule, j.window, j.retries, j.retryDelay, j.nextRunAt], ['0 */2 * * 1-5', '08:00-18:00', 0, '30s', '2026-06-01T10:00:00.000Z']);

  ok(await set('--disabled', '--after', 'db'), 'job set --disabled --after');
  j = await show('edit');
  assert.deepEqual([j.disabled, j.after, j.nextRunAt], [true, 'db', null]);
  assert.match(ok(await run(['job', 'show', 'edit', '--repo', repo]), 'job show'), /next run: +none \(disabled\)$/m);

  ok(await set('--enabled', '--no-after', '--no-window'), 'job set --enabled');
  j = await show('edit');
  assert.deepEqual([j.disabled, j.after, j.window, j.nextRunAt], [undefined, undefined, undefined, '2026-06-01T10:00:00.000Z']);
  assert.equal((await jobJson('edit'))['disabled'], undefined, 'enabled is the default: job.json leaves it out');

  ok(await set('--no-schedule'), 'job set --no-schedule');
  j = await show('edit');
  assert.deepEqual([j.schedule, j.nextRunAt], [undefined, null]);

  fails(await set('--schedule', '0 1 * * *', '--no-schedule'), 2, 'LFB_ERR_USAGE', '--no-schedule');
  fails(await set('--disabled', '--enabled'), 2, 'LFB_ERR_USAGE', '--enabled');
});

test('invalid cron, window, duration, retries and --after are refused naming the flag, and change nothing', async () => {
  ok(await run(['job', 'create', 'guarded', '--repo', repo, '--disk', disk, '--schedule', '0 3 * * *']), 'job create guarded');
  const before = await readFile(join(repo, 'jobs', 'guarded', 'job.json'), 'utf8');
  const refused: [string[], string][] = [
    [['--schedule', '61 * * * *'], '--schedule'],
    [['--schedule', 'every day'], '--schedule'],
    [['--schedule', '* * * * * * *'], '--schedule'], // a year field is not taken
    [['--schedule', '0 0 30 2 *'], '--schedule'], // 30 February never comes
    [['--window', '25:00-01:00'], '--window'],
    [['--window', '22:00'], '--window'],
    [['--window', '10:00-10:00'], '--window'],
    [['--retry-delay', '10x'], '--retry-delay'],
    [['--retry-delay', '0s'], '--retry-delay'],
    [['--retry-delay', '31d'], '--retry-delay'],
    [['--retries', 'many'], '--retries'],
    [['--retries', '101'], '--retries'],
    [['--after', 'nosuch'], '--after'],
    [['--after', 'guarded'], '--after'],
  ];
  for (const [flags, flag] of refused) fails(await run(['job', 'set', 'guarded', '--repo', repo, ...flags]), 2, 'LFB_ERR_INVALID_ARGUMENT', flag);
  // job create checks by the same rules (one of each flag: every process start costs half a second).
  const create = (name: string, ...flags: string[]): Promise<CliResult> => run(['job', 'create', name, '--repo', repo, '--disk', disk, ...flags]);
  for (const [flags, flag] of refused.filter(([, f], i) => refused.findIndex(([, g]) => g === f) === i))
    fails(await create(`new-${flag.slice(2)}`, ...flags), 2, 'LFB_ERR_INVALID_ARGUMENT', flag);
  fails(await create('new-selfish', '--after', 'new-selfish'), 2, 'LFB_ERR_INVALID_ARGUMENT', '--after');
  assert.equal(await readFile(join(repo, 'jobs', 'guarded', 'job.json'), 'utf8'), before, 'a refused change left job.json as it was');
  const jobs = ok(await run(['job', 'list', '--repo', repo, '--json']), 'job list');
  assert.ok(!jobs.includes('new-'), `a refused job create made a job: ${jobs}`);
  // Chaining that loops is refused: a runs after b, b after a.
  ok(await run(['job', 'create', 'loop-a', '--repo', repo, '--disk', disk]), 'job create loop-a');
  ok(await run(['job', 'create', 'loop-b', '--repo', repo, '--disk', disk, '--after', 'loop-a']), 'job create loop-b');
  fails(await run(['job', 'set', 'loop-a', '--repo', repo, '--after', 'loop-b']), 2, 'LFB_ERR_INVALID_ARGUMENT', 'loop-a → loop-b → loop-a');
});
