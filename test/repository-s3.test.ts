// A repository on S3 (Ceph's radosgw, one cluster for this file) through the real `lifeboat` command: every backup
// method with retention, restore bit-exact, verify, compact and its collection of unused packs, an encrypted
// repository, a backup killed with -9, and the commands that still need a folder refused with a stable code
// (instant and file-level recovery on S3 are test/recovery-s3's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { S3ObjectStore } from '../src/objects/s3-object-store.js';
import { PACKS } from '../src/objects/file-root.js';
import { isLifeboatError } from '../src/core/errors.js';
import { useCephS3 } from './ceph-fixture.js';
import { BIN, MiB, cli, randomBytes, rng, tempDir, scatterWrites, type CliResult, type ListedPoint } from './helpers.js';

const ceph = useCephS3();

function s3env(): Record<string, string> {
  const c = ceph().connection;
  return {
    AWS_ENDPOINT_URL: c.endpoint!,
    AWS_REGION: c.region!,
    AWS_ACCESS_KEY_ID: c.credentials!.accessKeyId,
    AWS_SECRET_ACCESS_KEY: c.credentials!.secretAccessKey,
  };
}

async function run(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return cli(args, { ...s3env(), ...env });
}

async function ok(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await run(args, env);
  assert.equal(r.code, 0, `lifeboat ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The job's restorable points, oldest first. */
async function availablePoints(repo: string, env: Record<string, string> = {}): Promise<ListedPoint[]> {
  return (JSON.parse(await ok(['points', 'vm', '--repo', repo, '--json'], env)) as ListedPoint[]).filter((p) => p.available);
}

async function restored(repo: string, point: string, to: string, env: Record<string, string> = {}): Promise<Buffer> {
  await ok(['restore', 'vm', '--repo', repo, '--point', point, '--to', to], env);
  return readFile(to);
}

async function countPacks(url: string): Promise<number> {
  const store = await S3ObjectStore.open(url, { connection: ceph().connection });
  try {
    let n = 0;
    for await (const o of store.list(PACKS)) if (o.name.startsWith(PACKS)) n++;
    return n;
  } finally {
    await store.close();
  }
}

interface Scene {
  readonly dir: string;
  readonly bucket: string;
  /** s3://<bucket>/<prefix> */
  readonly repo: string;
  readonly disk: string;
  /** The disk's bytes: change() keeps them equal to the file's. */
  readonly content: Buffer;
  readonly rand: () => number;
}

/** A bucket of the test's own and a source disk of `bytes` seeded bytes in a temporary folder (removed after, whatever the outcome). */
async function withScene(label: string, seed: number, bytes: number, fn: (s: Scene) => Promise<void>, prefix = 'r'): Promise<void> {
  const t = await tempDir();
  try {
    const rand = rng(seed);
    const bucket = ceph().bucket(label);
    const disk = join(t.dir, 'vm.img');
    const content = randomBytes(rand, bytes);
    await writeFile(disk, content);
    await fn({ dir: t.dir, bucket, repo: `s3://${bucket}/${prefix}`, disk, content, rand });
  } finally {
    await t.cleanup();
  }
}

/** Guest-like changes between runs: a few scattered writes. */
const change = (disk: string, content: Buffer, rand: () => number): Promise<void> => scatterWrites(disk, content, rand, 3, 70_000);

for (const method of ['forever', 'forward', 'reverse'] as const) {
  test(`S3 repository, ${method} method: backups with retention, every point restores bit-exact, verify finds nothing wrong`, () =>
    withScene(
      `repo-${method}`,
      method.length * 7,
      6 * MiB + 4096,
      async ({ dir, repo, disk, content, rand }) => {
        assert.match(await ok(['repo', 'init', repo, '--block-size', '256K']), new RegExp(`created repository ${repo.replace(/[/.]/g, '\\$&')}`));
        await ok(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', method, '--retain-points', '3']);
        const expected = new Map<string, Buffer>();
        for (let i = 0; i < 5; i++) {
          // Forward chains leave whole: a new chain every other run gives retention one to delete.
          const activeFull = method === 'forward' && i % 2 === 0 && i > 0 ? ['--active-full'] : [];
          const out = JSON.parse(await ok(['backup', 'vm', '--repo', repo, '--json', ...activeFull])) as { pointId: string };
          expected.set(out.pointId, Buffer.from(content));
          await change(disk, content, rand);
        }
        const points = await availablePoints(repo);
        // forward: chains [0,1] [2,3] [4]; the oldest goes once 3 newer points exist.
        assert.equal(points.length, 3, `retention keeps 3: ${JSON.stringify(points.map((p) => [p.id, p.kind]))}`);
        for (const p of points) assert.ok((await restored(repo, p.id, join(dir, `${p.id}.img`))).equals(expected.get(p.id)!), `point ${p.id} (${p.kind})`);
        assert.match(await ok(['verify', 'vm', '--repo', repo, '--all']), /^OK: /m);
        const info = JSON.parse(await ok(['repo', 'info', '--repo', repo, '--json'])) as { repo: string; freeBytes: unknown; jobs: { points: number }[] };
        assert.equal(info.freeBytes, null);
        assert.equal(info.jobs[0]!.points, 3);
      },
      'backups/main',
    ));
}

test('S3 repository: compact removes the packs merges and a deleted job left, once past --pack-grace; what is kept restores', () =>
  withScene('compact', 11, 4 * MiB, async ({ dir, bucket, repo, disk, content, rand }) => {
    await ok(['repo', 'init', repo, '--block-size', '256K']);
    await ok(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--retain-points', '2']);
    await ok(['job', 'create', 'other', '--repo', repo, '--disk', disk]);
    await ok(['backup', 'other', '--repo', repo]);
    const expected = new Map<string, Buffer>();
    for (let i = 0; i < 4; i++) {
      const run = JSON.parse(await ok(['backup', 'vm', '--repo', repo, '--json'])) as { pointId: string };
      expected.set(run.pointId, Buffer.from(content));
      await change(disk, content, rand);
    }
    await ok(['job', 'delete', 'other', '--repo', repo, '--with-points']);
    const before = await countPacks(`s3://${bucket}/r`);
    const young = JSON.parse(await ok(['compact', 'vm', '--repo', repo, '--json'])) as { objects: { packsRemoved: number } };
    assert.equal(young.objects.packsRemoved, 0, 'the default grace (6 h) keeps every pack this young');
    await new Promise((r) => setTimeout(r, 1100));
    const out = await ok(['compact', 'vm', '--repo', repo, '--pack-grace', '1s']);
    const m = /object storage: removed (\d+) pack\(s\) no file uses/.exec(out);
    assert.ok(m && Number(m[1]) > 0, out);
    // compact writes too (the job's .vbm): fewer packs, not exactly `before - removed`.
    const after = await countPacks(`s3://${bucket}/r`);
    assert.ok(after < before, `${before} packs before, ${after} after`);
    const points = await availablePoints(repo);
    assert.equal(points.length, 2);
    for (const p of points) assert.ok((await restored(repo, p.id, join(dir, `${p.id}.img`))).equals(expected.get(p.id)!), `point ${p.id}`);
    assert.match(await ok(['verify', 'vm', '--repo', repo, '--all']), /^OK: /m);
  }));

test('S3 repository: encrypted at rest; a backup killed with -9 leaves the earlier points restorable and the next run succeeds', () =>
  withScene('crypt', 5, 96 * MiB, async ({ dir, bucket, repo, disk, content, rand }) => {
    const pw = join(dir, 'pw');
    await writeFile(pw, 'a long enough password\n');
    const env = { LIFEBOAT_PASSWORD_FILE: pw };
    await ok(['repo', 'init', repo, '--encrypt'], env);
    await ok(['job', 'create', 'vm', '--repo', repo, '--disk', disk], env);
    const first = JSON.parse(await ok(['backup', 'vm', '--repo', repo, '--json'], env)) as { pointId: string };
    const firstBytes = Buffer.from(content);
    randomBytes(rand, 80 * MiB).copy(content, 0);
    await writeFile(disk, content);
    // Killed while it writes the new point: once its temporary backup file has a root on S3, 80 MiB are still to go.
    const child = spawn(process.execPath, [BIN, 'backup', 'vm', '--repo', repo], { env: { ...process.env, ...s3env(), ...env }, stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    const store = await S3ObjectStore.open(`s3://${bucket}/r`, { connection: ceph().connection });
    try {
      const writing = async (): Promise<boolean> => {
        for await (const o of store.list('roots/jobs/vm/.')) if (o.name.includes('.tmp#')) return true;
        return false;
      };
      const deadline = Date.now() + 60_000;
      while (!(await writing())) {
        assert.ok(Date.now() < deadline && child.exitCode === null, 'the backup wrote its temporary file');
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      child.kill('SIGKILL');
      await exited;
      await store.close();
    }
    const after = await availablePoints(repo, env);
    assert.ok(
      after.some((p) => p.id === first.pointId),
      JSON.stringify(after),
    );
    assert.ok((await restored(repo, first.pointId, join(dir, 'first.img'), env)).equals(firstBytes));
    const next = JSON.parse(await ok(['backup', 'vm', '--repo', repo, '--json'], env)) as { pointId: string };
    assert.ok((await restored(repo, next.pointId, join(dir, 'next.img'), env)).equals(content));
    assert.match(await ok(['verify', 'vm', '--repo', repo, '--all'], env), /^OK: /m);
    // Without the password nothing is read.
    const locked = await run(['restore', 'vm', '--repo', repo, '--point', 'latest', '--to', join(dir, 'x.img')], { LIFEBOAT_PASSWORD_FILE: '' });
    assert.match(locked.stderr, /is encrypted: give its password/);
  }));

test('S3 repository: what needs a folder (sandboxes) is refused with LFB_ERR_STORE_UNSUPPORTED, instant recovery asks for a server; init twice is refused, and --immutable-days on a bucket without object lock', async () => {
  const repo = `s3://${ceph().bucket('refuse')}/r`;
  await ok(['repo', 'init', repo]);
  const again = await run(['repo', 'init', repo]);
  assert.match(again.stderr, /already a Lifeboat repository.*\[LFB_ERR_REPO_EXISTS\]/);
  // S3 turns object lock on only when a bucket is made: this one was made without it.
  const immutable = await run(['repo', 'init', `${repo}-immutable`, '--immutable-days', '7']);
  assert.match(immutable.stderr, /has no object lock.*\[LFB_ERR_IMMUTABLE_UNSUPPORTED\]/s);
  for (const args of [['sandbox', 'list', '--repo', repo]]) {
    const r = await run(args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, /needs a repository in a folder; s3:\/\/.* is on object storage.*\[LFB_ERR_STORE_UNSUPPORTED\]/, `${args.join(' ')}: ${r.stderr}`);
  }
  // Instant recovery works on S3 through a server (test/recovery-s3); without one it says so.
  const instant = await run(['instant', 'start', 'vm', '--repo', repo, '--point', 'latest']);
  assert.match(
    instant.stderr,
    /no Lifeboat server is running for s3:\/\/[^ ]+\/r; start one with `lifeboat serve --repo s3:\/\/.*\[LFB_ERR_SERVER_NOT_RUNNING\]/,
  );
});

test('S3 repository, --immutable-days: backup files are written locked (COMPLIANCE) for the days, lifeboat.json for good; a DELETE before the date fails; rewriting methods, compact and job delete are refused', () =>
  withScene('immutable', 3, 3 * MiB, async ({ dir, bucket, repo, disk, content, rand }) => {
    const started = Date.now();
    await ok(['repo', 'init', repo, '--immutable-days', '2', '--block-size', '256K']);
    const forever = await run(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', 'forever']);
    assert.match(forever.stderr, /immutable repository.*\[LFB_ERR_IMMUTABLE\]/s);
    await ok(['job', 'create', 'vm', '--repo', repo, '--disk', disk, '--method', 'forward', '--active-full', 'sun']);
    const first = JSON.parse(await ok(['backup', 'vm', '--repo', repo, '--json'])) as { pointId: string };
    const firstBytes = Buffer.from(content);
    await change(disk, content, rand);
    await ok(['backup', 'vm', '--repo', repo]);
    assert.ok((await restored(repo, first.pointId, join(dir, 'first.img'))).equals(firstBytes));
    assert.ok((await restored(repo, 'latest', join(dir, 'latest.img'))).equals(content));

    const store = await S3ObjectStore.open(`s3://${bucket}/r`, { connection: ceph().connection });
    try {
      assert.equal(store.retention, true, 'the bucket was made with object lock');
      const twoDays = started + 2 * 86_400_000;
      const backupRoots: string[] = [];
      for await (const o of store.list('roots/jobs/vm/')) if (/\.(vbk|vib)#/.test(o.name)) backupRoots.push(o.name);
      assert.equal(backupRoots.length, 2, backupRoots.join(' '));
      for (const name of backupRoots) {
        const until = (await store.head(name))?.retainUntil?.getTime() ?? 0;
        assert.ok(until >= twoDays && until < twoDays + 10 * 60_000, `${name} locked until ${new Date(until).toISOString()}`);
        const refused = await store.delete(name).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(isLifeboatError(refused, 'LFB_ERR_IMMUTABLE'), `DELETE of ${name}: ${String(refused)}`);
      }
      let lockedPacks = 0;
      for await (const o of store.list(PACKS)) if ((await store.head(o.name))?.retainUntil !== undefined) lockedPacks++;
      assert.ok(lockedPacks >= 2, `${lockedPacks} locked packs`);
      const config = (await store.head('roots/lifeboat.json#0000000000000001'))?.retainUntil;
      assert.ok(config !== undefined && config.getTime() > started + 365 * 86_400_000, `lifeboat.json until ${config?.toISOString()}`);
      await assert.rejects(store.delete('roots/lifeboat.json#0000000000000001'), (e: unknown) => isLifeboatError(e, 'LFB_ERR_IMMUTABLE'));
    } finally {
      await store.close();
    }
    assert.match((await run(['compact', 'vm', '--repo', repo])).stderr, /\[LFB_ERR_IMMUTABLE\]/);
    assert.match((await run(['job', 'delete', 'vm', '--repo', repo, '--with-points'])).stderr, /immutable until .*\[LFB_ERR_IMMUTABLE\]/s);
    // Everything is still there and whole.
    assert.match(await ok(['verify', 'vm', '--repo', repo, '--all']), /^OK: /m);
  }));

test('S3 repository as a backup copy target: copy create --to-repo s3://… makes it, copy run fills it, its points restore bit-exact', () =>
  withScene(
    'copy',
    23,
    3 * MiB,
    async ({ dir, repo: target, disk, content }) => {
      const local = join(dir, 'repo');
      await ok(['repo', 'init', local, '--block-size', '256K']);
      await ok(['job', 'create', 'vm', '--repo', local, '--disk', disk]);
      await ok(['backup', 'vm', '--repo', local]);
      assert.match(
        await ok(['copy', 'create', 'off', '--repo', local, '--to-repo', target, '--job', 'vm']),
        new RegExp(`→ ${target.replace(/[/.]/g, '\\$&')}`),
      );
      await ok(['copy', 'run', 'off', '--repo', local]);
      const copied = await availablePoints(target);
      assert.equal(copied.length, 1);
      assert.ok((await restored(target, 'latest', join(dir, 'copied.img'))).equals(content));
    },
    'offsite',
  ));
