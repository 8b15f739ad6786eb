/**
 * The console's copy jobs page in Chromium: the repository's capacity tier
 * (none, then set, run from the page, a chain moved); a repository's copy job with its
 * target and "never run here"; an operator's "Run now" opens the copy run's
 * page, which ends succeeded, and the list then links its last run; a
 * viewer's "Run now" is disabled.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, randomBytes, rng, MiB } from './helpers.js';
import { apiGet, startConsole, type Console } from './console-harness.js';

let c: Console;
before(async () => {
  c = await startConsole();
});
after(async () => {
  await c?.close();
});

async function ok(args: string[]): Promise<void> {
  const r = await cli(args);
  assert.equal(r.code, 0, `lifeboat ${args.join(' ')}: ${r.stderr}`);
}

// First: the tier it sets up stays for the next test (its page then reads the tier instead of a 404).
test(
  'copies page, capacity tier: none yet, then the setting and each file local; Run now opens the tier run; the old chain then on the capacity tier',
  { timeout: 120_000 },
  async () => {
    const disk = join(c.dir, 'tiered.img');
    await writeFile(disk, randomBytes(rng(19), 2 * MiB));
    await ok(['job', 'create', 'tiered', '--repo', c.repo, '--disk', disk, '--method', 'forward', '--retain-points', '5']);
    await ok(['backup', 'tiered', '--repo', c.repo]);
    await ok(['backup', 'tiered', '--repo', c.repo, '--active-full']);

    const page = await c.newPage();
    await c.login(page, 'operator');
    await page.evaluate(() => (location.hash = '#/copies'));
    await page.waitForSelector('.tier-panel[data-tier=none]');
    const placesNow = async () =>
      (await apiGet<{ points: { place?: string }[] }>(page, `/repositories/${c.repoName}/jobs/tiered/points`)).points.map((p) => p.place ?? 'none');
    assert.deepEqual(await placesNow(), ['none', 'none'], 'no tier: the points say nothing of a place');
    await ok(['tier', 'set', '--repo', c.repo, '--capacity', join(c.dir, 'capacity'), '--move-after-days', '0']);
    // The setting alone (no file of the job changed) is enough for the catalog's copy to be read again.
    assert.deepEqual(await placesNow(), ['local', 'local']);
    await page.click('.tier-panel button:not([data-mutating])');
    await page.waitForSelector('.tier-panel[data-tier=yes]');
    assert.deepEqual(await page.$$eval('.tier-panel tr[data-place]', (rows) => rows.map((r) => r.getAttribute('data-place'))), ['local', 'local']);
    assert.match(await page.$eval('.tier-panel .stats', (e) => (e as HTMLElement).innerText), /moves chains 0 days old.*never run here/s);
    await Promise.all([page.waitForFunction(() => /^#\/runs\/\d+$/.test(location.hash)), page.click('.tier-panel button[data-mutating]')]);
    await page.waitForFunction(() => document.querySelector('#run-title .badge')?.textContent === 'succeeded', { timeout: 60_000 });
    assert.ok((await page.evaluate(() => document.body.innerText)).includes(`Capacity tier of ${c.repoName}`));
    await page.evaluate(() => (location.hash = '#/copies'));
    // The older chain (the first full) moved; the newest stays.
    await page.waitForSelector('.tier-panel[data-tier=yes] tr[data-place=capacity]');
    assert.deepEqual(await page.$$eval('.tier-panel tr[data-place]', (rows) => rows.map((r) => r.getAttribute('data-place'))), ['capacity', 'local']);
    await c.screenshot(page, 'capacity-tier');
    // The API and the dashboard count the moved full on the capacity tier, the rest in the folder.
    const tier = await apiGet<{ tier: { jobs: { job: string; files: { bytes: number; place: string }[] }[] } }>(page, `/repositories/${c.repoName}/tier`);
    const moved = tier.tier.jobs
      .find((j) => j.job === 'tiered')!
      .files.filter((f) => f.place !== 'local')
      .reduce((a, f) => a + f.bytes, 0);
    const repoUsage = await apiGet<{ capacityBytes?: number; jobs: { name: string; capacityBytes?: number }[] }>(page, `/repositories/${c.repoName}`);
    assert.ok(moved > 0);
    assert.equal(repoUsage.capacityBytes, moved);
    assert.equal(repoUsage.jobs.find((j) => j.name === 'tiered')!.capacityBytes, moved);
    // Each point says where its file is: the API's points and the console's points table.
    const listed = await apiGet<{ points: { file: string; place?: string }[] }>(page, `/repositories/${c.repoName}/jobs/tiered/points`);
    assert.deepEqual(
      listed.points.map((p) => p.place),
      ['capacity', 'local'],
    );
    await page.evaluate((repo) => (location.hash = `#/jobs/${repo}/tiered/points`), c.repoName);
    await page.waitForSelector('.point-table td[data-col=place]');
    assert.deepEqual(
      await page.$$eval('.point-table td[data-col=place]', (cells) => cells.map((td) => `${td.getAttribute('data-place')}: ${(td as HTMLElement).innerText}`)),
      ['local: repository', 'capacity: capacity tier'],
      'newest first',
    );
    await page.evaluate(() => (location.hash = '#/'));
    await page.waitForSelector('[data-stat=capacity-tier] dd');
    assert.match(await page.$eval('[data-stat=capacity-tier] dd', (e) => (e as HTMLElement).innerText), /^[\d.]+ [KMG]?i?B$/);
    c.assertClean(page);
    await page.close();
  },
);

test('copies page: the copy job, Run now as an operator opens its run, the last run linked; disabled for a viewer', { timeout: 120_000 }, async () => {
  const disk = join(c.dir, 'vm.img');
  await writeFile(disk, randomBytes(rng(18), 2 * MiB));
  const target = join(c.dir, 'offsite');
  await ok(['job', 'create', 'vm', '--repo', c.repo, '--disk', disk]);
  await ok(['backup', 'vm', '--repo', c.repo]);
  await ok(['copy', 'create', 'off', '--repo', c.repo, '--to-repo', target, '--job', 'vm']);

  const page = await c.newPage();
  await c.login(page, 'operator');
  await page.evaluate(() => (location.hash = '#/copies'));
  const row = await page.waitForSelector('.copies-page[data-ready] tr[data-copy=off]');
  assert.match(
    (await row!.evaluate((e) => (e as HTMLElement).innerText)) ?? '',
    new RegExp(`vm\\s+${target.replace(/[/.]/g, '\\$&')}\\s+only when asked.*never run here`, 's'),
  );
  await Promise.all([page.waitForFunction(() => /^#\/runs\/\d+$/.test(location.hash)), page.click('tr[data-copy=off] button[data-mutating]')]);
  const runId = Number(/\d+$/.exec(await page.evaluate(() => location.hash))![0]);
  await page.waitForFunction(() => document.querySelector('#run-title .badge')?.textContent === 'succeeded', { timeout: 60_000 });
  // The run's page names its copy job, linked to the Copies page (not to the backup job "vm").
  assert.equal(await page.$eval(`a[href="#/copies/${c.repoName}"]`, (a) => (a as HTMLElement).innerText), `Copy job ${c.repoName}/off`);
  await page.evaluate(() => (location.hash = '#/copies'));
  await page.waitForSelector(`.copies-page[data-ready] tr[data-copy=off][data-last-state=succeeded] a[href="#/runs/${runId}"]`);
  await c.screenshot(page, 'copies');
  c.assertClean(page);
  await page.close();

  const viewer = await c.newPage();
  await c.login(viewer, 'viewer');
  await viewer.evaluate(() => (location.hash = '#/copies'));
  await viewer.waitForSelector('.copies-page[data-ready] tr[data-copy=off]');
  assert.equal(await viewer.$eval('tr[data-copy=off] button[data-mutating]', (b) => (b as HTMLButtonElement).disabled), true);
  c.assertClean(viewer);
  await viewer.close();
});
