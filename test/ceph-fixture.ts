// One Ceph cluster with radosgw (scripts/ceph-s3.sh) per test file, shared by its tests; each test makes
// its own bucket. The cluster is stopped after the file's tests whatever their outcome, on SIGINT and
// SIGTERM, at the process's exit, and by the script's watchdog if this process is killed with -9.
import { after, before } from 'node:test';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3Connection } from '../src/objects/s3-config.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/ceph-s3.sh', import.meta.url));

export interface CephS3 {
  readonly dir: string;
  readonly endpoint: string;
  readonly connection: S3Connection;
  /** A bucket name no test of this cluster has used. */
  bucket(label: string): string;
  /** The PID of a daemon: 'mon', 'osd' or 'rgw'. */
  pid(daemon: 'mon' | 'osd' | 'rgw'): number;
  /** radosgw-admin against this cluster, with a deadline. */
  admin(args: string[]): string;
}

function stopSync(dir: string): void {
  const r = spawnSync(SCRIPT, ['stop', dir], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) process.stderr.write(`ceph-s3.sh stop ${dir} failed (${r.status ?? r.signal}): ${r.stderr}\n`);
}

/** Registers the start before the file's tests and the stop after them; the returned function gives the running cluster. */
export function useCephS3(): () => CephS3 {
  let cluster: CephS3 | undefined;
  let dir: string | undefined;
  const stop = (): void => {
    if (dir === undefined) return;
    const d = dir;
    dir = undefined;
    stopSync(d);
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    stop();
    process.kill(process.pid, signal);
  };
  before(async () => {
    // The script builds in this (empty) folder and deletes it when it stops the cluster.
    dir = mkdtempSync(join(tmpdir(), 'lfb-ceph-'));
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.once('exit', stop);
    const started = Date.now();
    const out = await new Promise<string>((resolve, reject) =>
      execFile(SCRIPT, ['start', dir!], { env: { ...process.env, CEPH_S3_OWNER_PID: String(process.pid) }, timeout: 120_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`scripts/ceph-s3.sh start failed: ${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const env = Object.fromEntries([...out.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
    const endpoint = env['AWS_ENDPOINT_URL']!;
    const clusterDir = dir;
    let buckets = 0;
    const run = randomBytes(3).toString('hex');
    cluster = {
      dir: clusterDir,
      endpoint,
      connection: { endpoint, region: 'us-east-1', credentials: { accessKeyId: env['AWS_ACCESS_KEY_ID']!, secretAccessKey: env['AWS_SECRET_ACCESS_KEY']! } },
      bucket: (label) => `lfb-${label}-${run}-${++buckets}`.slice(0, 63),
      pid: (daemon) => {
        const line = readFileSync(join(clusterDir, 'pids'), 'utf8')
          .split('\n')
          .find((l) => l.startsWith(`${daemon} `));
        if (line === undefined) throw new Error(`no ${daemon} in ${clusterDir}/pids`);
        return Number(line.split(' ')[1]);
      },
      admin: (args) => {
        const r = spawnSync('radosgw-admin', ['-c', join(clusterDir, 'ceph.conf'), ...args], { encoding: 'utf8', timeout: 30_000 });
        if (r.status !== 0) throw new Error(`radosgw-admin ${args.join(' ')}: ${r.stderr}`);
        return r.stdout;
      },
    };
    process.stderr.write(`ceph-fixture: cluster at ${endpoint} started in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  });
  after(() => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', stop);
    stop();
  });
  return () => {
    if (cluster === undefined) throw new Error('the Ceph cluster is not running (useCephS3 starts it before the tests)');
    return cluster;
  };
}

/**
 * Puts the cluster's endpoint and keys in this process's environment (so every command a test runs, and every
 * server it starts, reaches the cluster) and LIFEBOAT_STATE_DIR under `dir` (this host's side of the repositories).
 */
export function useClusterEnv(cluster: CephS3, dir: string): void {
  const c = cluster.connection;
  Object.assign(process.env, {
    AWS_ENDPOINT_URL: c.endpoint!,
    AWS_REGION: c.region!,
    AWS_ACCESS_KEY_ID: c.credentials!.accessKeyId,
    AWS_SECRET_ACCESS_KEY: c.credentials!.secretAccessKey,
    LIFEBOAT_STATE_DIR: join(dir, 'host'),
  });
}
