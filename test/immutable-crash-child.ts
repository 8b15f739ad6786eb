// Run by test/immutable-repo.test.ts under LIFEBOAT_CRASH_AT=N: applies a job's retention alone
// (node immutable-crash-child.js <repo> <job> <ISO now>), so that the N-th crash point falls
// inside retention's unlock-then-delete of immutable files.
import { Repository, loadJob, scanJob } from '../src/repository/index.js';
import { applyRetention } from '../src/methods/retention-run.js';

const [repoDir, jobName, nowIso] = process.argv.slice(2) as [string, string, string];
const repo = await Repository.open(repoDir);
const job = await loadJob(repo, jobName);
const dir = repo.jobDir(job.name);
const done = await applyRetention(job, dir, await scanJob(dir, repo.storage), new Date(nowIso), { immutableDays: repo.config.immutableDays });
process.stdout.write(JSON.stringify(done));
