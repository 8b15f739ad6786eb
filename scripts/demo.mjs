// The main job on embedded defaults: builds a sample VM disk (an ext4 filesystem
// holding real files), backs it up into a fresh repository, changes it and makes
// increments with forever-forward retention, lists the restore points and
// restores the latest bit-exact. Every step is the real `lifeboat` command.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';

const work = resolve(process.env.LIFEBOAT_DEMO_DIR ?? 'demo-repo');
const bin = resolve('bin/lifeboat.js');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const disk = join(work, 'sample-vm.img');
const repo = join(work, 'repo');

function run(...args) {
  console.log(`\n$ lifeboat ${args.join(' ')}`);
  execFileSync(process.execPath, [bin, ...args], { stdio: 'inherit' });
}
const sha = (p) => createHash('sha256').update(readFileSync(p)).digest('hex');

console.log(`building a 512 MiB sample disk (ext4 holding ~200 MB of files from /usr) at ${disk}`);
const { buildSampleImage } = await import('../dist/bench/sample-image.js');
const made = buildSampleImage(disk, 512 * 1024 * 1024, 200 * 1024 * 1024);
console.log(`  ${made.files} files, ${(made.bytes / 1e6).toFixed(0)} MB`);

run('repo', 'init', repo);
run('job', 'create', 'sample-vm', '--repo', repo, '--disk', disk, '--method', 'forever', '--retain-points', '3');
run('backup', 'sample-vm', '--repo', repo);
for (let i = 1; i <= 4; i++) {
  // A guest at work: a few MiB rewritten at scattered places.
  const fd = openSync(disk, 'r+');
  for (let k = 0; k < 8; k++) writeSync(fd, randomBytes(256 * 1024), 0, 256 * 1024, Math.floor(Math.random() * 500) * 1024 * 1024);
  closeSync(fd);
  run('backup', 'sample-vm', '--repo', repo);
}
run('points', 'sample-vm', '--repo', repo);
const out = join(work, 'restored.img');
run('restore', 'sample-vm', '--repo', repo, '--point', 'latest', '--to', out);
const same = sha(out) === sha(disk);
console.log(`\nrestored latest point: sha256 ${same ? 'matches' : 'DIFFERS FROM'} the disk`);
process.exit(same ? 0 : 1);
