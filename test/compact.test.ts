import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli, randomBytes, readPoint, rng, tempDir, writeAt } from './helpers.js';

interface Point {
  id: string;
  available: boolean;
}

const BS = 256 * 1024;

async function jobBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) if (/\.(vbk|vib|vrb)$/.test(f)) n += (await stat(join(dir, f))).size;
  return n;
}

async function points(repo: string, job: string): Promise<Point[]> {
  return (JSON.parse((await cli(['points', job, '--repo', repo, '--json'])).stdout) as Point[]).filter((p) => p.available);
}

test(
  'compact: merges and reverse runs leave dead space; compact reclaims it, every point stays bit-exact, and a kill -9 at any step loses nothing',
  { timeout: 10 * 60_000 },
  async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const rand = rng(61);
      const repo = join(dir, 'repo');
      assert.equal((await cli(['repo', 'init', repo, '--block-size', '256K'])).code, 0);
      const model = new Map<string, Buffer>();
      for (const method of ['forever', 'reverse']) {
        const disk = join(dir, `${method}.img`);
        const content = randomBytes(rand, 12 * BS);
        await writeFile(disk, content);
        assert.equal((await cli(['job', 'create', method, '--repo', repo, '--disk', disk, '--method', method, '--retain-points', '3'])).code, 0);
        for (let run = 0; run < 6; run++) {
          for (let k = 0; k < 3; k++) {
            const off = Math.floor(rand() * (content.length - 100_000));
            const chunk = randomBytes(rand, 100_000);
            chunk.copy(content, off);
            await writeAt(disk, chunk, off);
          }
          assert.equal((await cli(['backup', method, '--repo', repo])).code, 0);
          const l = await points(repo, method);
          model.set(`${method}/${l[l.length - 1]!.id}`, Buffer.from(content));
        }
        const jobDir = join(repo, 'jobs', method);
        const before = await jobBytes(jobDir);
        // kill -9 at the 1st, 2nd, 3rd… durable step until a run gets through: nothing lost at any of them.
        let kills = 0;
        for (let at = 1; at <= 60; at++) {
          const r = await cli(['compact', method, '--repo', repo], { LIFEBOAT_CRASH_AT: String(at) });
          if (r.signal === 'SIGKILL') kills += 1;
          else assert.equal(r.code, 0, r.stderr);
          for (const p of await points(repo, method))
            assert.ok(
              (await readPoint(repo, method, p.id)).equals(model.get(`${method}/${p.id}`)!),
              `${method}: compact killed at step ${at}: point ${p.id} differs`,
            );
          const v = await cli(['verify', method, '--repo', repo, '--all']);
          assert.equal(v.code, 0, v.stdout);
          if (r.signal !== 'SIGKILL') break;
        }
        assert.ok(kills >= 3, `${method}: only ${kills} kills`);
        const after = await jobBytes(jobDir);
        assert.ok(after < before * 0.9, `${method}: compact reclaimed too little (${before} → ${after} bytes)`);
        const again = JSON.parse((await cli(['compact', method, '--repo', repo, '--json'])).stdout) as { files: unknown[] };
        assert.equal(again.files.length, 0, 'a second compact finds nothing');
      }
    } finally {
      await cleanup();
    }
  },
);
