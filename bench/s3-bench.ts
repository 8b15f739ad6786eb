/**
 * Backup to S3: Lifeboat against restic on the same radosgw, same image, one run.
 *
 *   npm run bench:s3        (BENCH_IMAGE_MIB=2048 BENCH_DATA_MIB=1200 by default)
 *
 * A one-node Ceph cluster (scripts/ceph-s3.sh) is started for the run and stopped
 * after it. On a 2 GiB ext4 image holding ~1.2 GB of real files from /usr:
 *   full         first backup
 *   blocks-5%    ~5% of the 1 MiB blocks rewritten with new real data
 *   restore      the latest point back to a local file (restic: `restore latest`)
 * For each: wall seconds, requests radosgw served (its request log), and bytes
 * stored in the bucket. Lifeboat runs with its defaults (1 MiB blocks, zstd-1);
 * restic with its own (content-defined chunks, zstd auto), unencrypted neither.
 * Then instant recovery's sequential read of the latest point from a server on
 * the bucket against one on a local repository of the same image (s3-instant.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { S3ObjectStore } from '../src/objects/s3-object-store.js';
import { bin, work, referenceToolEnv, MiB } from './bench-util.js';
import { mutateBlocks } from './image-changes.js';
import { instantReads } from './s3-instant.js';
import { buildSampleImage } from './sample-image.js';

const imageMiB = Number(process.env['BENCH_IMAGE_MIB'] ?? 2048);
const dataMiB = Number(process.env['BENCH_DATA_MIB'] ?? 1200);
const cephScript = join(process.cwd(), 'scripts', 'ceph-s3.sh');

interface Measure {
  readonly seconds: number;
  readonly requests: number;
}

/** Lines radosgw logged for served requests so far: the count between two calls is what a run asked. */
function requestsServed(cephDir: string): number {
  const log = readFileSync(join(cephDir, 'log', 'client.rgw.gw.log'), 'utf8');
  let n = 0;
  for (const line of log.split('\n')) if (line.includes(' beast: ')) n++;
  return n;
}

function measured(cephDir: string, env: NodeJS.ProcessEnv, cmd: string, args: string[]): Measure {
  const before = requestsServed(cephDir);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString()}`);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, requests: requestsServed(cephDir) - before };
}

async function bucketBytes(bucket: string, env: NodeJS.ProcessEnv): Promise<number> {
  const store = await S3ObjectStore.open(`s3://${bucket}`, {
    connection: {
      endpoint: env['AWS_ENDPOINT_URL']!,
      region: 'us-east-1',
      credentials: { accessKeyId: env['AWS_ACCESS_KEY_ID']!, secretAccessKey: env['AWS_SECRET_ACCESS_KEY']! },
    },
  });
  try {
    let total = 0;
    for await (const o of store.list('')) total += o.size;
    return total;
  } finally {
    await store.close();
  }
}

async function main(): Promise<void> {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const cephDir = join(work, 'ceph');
  mkdirSync(cephDir);
  const out = execFileSync(cephScript, ['start', cephDir], { encoding: 'utf8' });
  try {
    const s3 = Object.fromEntries([...out.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
    const env = { ...referenceToolEnv, ...s3 };
    const image = join(work, 'vm.img');
    process.stdout.write(`building ${imageMiB} MiB ext4 image with ~${dataMiB} MiB of files from /usr … `);
    const made = buildSampleImage(image, imageMiB * MiB, dataMiB * MiB);
    console.log(`${made.files} files, ${(made.bytes / 1e6).toFixed(0)} MB`);
    const lbRepo = 's3://bench-lifeboat/repo';
    const rsRepo = `s3:${s3['AWS_ENDPOINT_URL']}/bench-restic`;
    const lb = (args: string[]): Measure => measured(cephDir, env, process.execPath, [bin, ...args]);
    const rs = (args: string[]): Measure => measured(cephDir, env, 'restic', ['--repo', rsRepo, ...args]);
    lb(['repo', 'init', lbRepo]);
    lb(['job', 'create', 'vm', '--repo', lbRepo, '--disk', image, '--retain-points', '100']);
    rs(['init']);

    const rows: { scenario: string; tool: string; m: Measure; stored?: number }[] = [];
    const stored = { lifeboat: 0, restic: 0 };
    const backup = async (scenario: string): Promise<void> => {
      rows.push({ scenario, tool: 'lifeboat', m: lb(['backup', 'vm', '--repo', lbRepo]) });
      const lbBytes = await bucketBytes('bench-lifeboat', env);
      rows[rows.length - 1] = { ...rows[rows.length - 1]!, stored: lbBytes - stored.lifeboat };
      stored.lifeboat = lbBytes;
      rows.push({ scenario, tool: 'restic', m: rs(['backup', '--quiet', image]) });
      const rsBytes = await bucketBytes('bench-restic', env);
      rows[rows.length - 1] = { ...rows[rows.length - 1]!, stored: rsBytes - stored.restic };
      stored.restic = rsBytes;
    };
    await backup('full');
    const changed = mutateBlocks(image, 0.05, 7);
    await backup('blocks-5%');
    const lbOut = join(work, 'restored-lifeboat.img');
    rows.push({ scenario: 'restore', tool: 'lifeboat', m: lb(['restore', 'vm', '--repo', lbRepo, '--point', 'latest', '--to', lbOut]) });
    const rsOut = join(work, 'restored-restic');
    rows.push({ scenario: 'restore', tool: 'restic', m: rs(['restore', 'latest', '--target', rsOut]) });
    const same = spawnSync('cmp', [image, lbOut]).status === 0;
    if (!same) throw new Error('the restored image differs from the source');

    const imageBytes = statSync(image).size;
    console.log(
      `\nimage ${(imageBytes / MiB).toFixed(0)} MiB; blocks-5% changed ${(changed.changedBytes / MiB).toFixed(0)} MiB (${(changed.changedCompressed / MiB).toFixed(1)} MiB after zstd-1); restore checked with cmp`,
    );
    console.log('scenario    tool       seconds  MB/s (image)  ×restic speed  requests  stored MB');
    for (const r of rows) {
      const ref = rows.find((x) => x.scenario === r.scenario && x.tool === 'restic')!;
      console.log(
        `${r.scenario.padEnd(12)}${r.tool.padEnd(11)}${r.m.seconds.toFixed(2).padStart(7)}  ${(imageBytes / 1e6 / r.m.seconds).toFixed(0).padStart(12)}  ${(ref.m.seconds / r.m.seconds).toFixed(2).padStart(13)}  ${String(r.m.requests).padStart(8)}  ${r.stored === undefined ? '' : (r.stored / 1e6).toFixed(1).padStart(9)}`,
      );
    }
    await instantReads(work, lbRepo, image, imageBytes, env);
  } finally {
    spawnSync(cephScript, ['stop', cephDir], { stdio: 'inherit' });
  }
}

await main();
