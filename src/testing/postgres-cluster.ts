/**
 * A throwaway PostgreSQL 15 cluster (Debian's postgresql package) for tests
 * and benchmarks: initdb and pg_ctl as the postgres user (so the caller runs
 * as root), reached only over a Unix socket in the cluster's own folder: no
 * TCP port, nothing shared with another cluster on the machine.
 */
import { execFile as execFileCb, execFileSync } from 'node:child_process';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';

const execFile = promisify(execFileCb);
export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface PostgresCluster {
  readonly dir: string;
  /** The URL of a database in the cluster, over its socket, as the postgres user. */
  urlOf(database: string): string;
  /** Creates an empty database; returns its URL. */
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  /** Stops the cluster at once and removes its folder; safe to call more than once. */
  stop(): Promise<void>;
}

function asPostgres(command: string, args: string[]) {
  return execFile('runuser', ['-u', 'postgres', '--', join(PG_BIN, command), ...args], { timeout: 120_000 });
}

export async function startPostgresCluster(): Promise<PostgresCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'lifeboat-pg-'));
  let admin: Kysely<unknown> | undefined;
  let stopped = false;
  const urlOf = (database: string) => `postgres:///${database}?host=${encodeURIComponent(dir)}&user=postgres`;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await admin?.destroy().catch(() => undefined);
    await asPostgres('pg_ctl', ['-D', dir, '-m', 'immediate', 'stop']).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']));
    const gid = Number(execFileSync('id', ['-g', 'postgres']));
    await chown(dir, uid, gid);
    await asPostgres('initdb', ['-D', dir, '-A', 'trust', '--no-sync']);
    const log = join(dir, 'server.log');
    try {
      // fsync off: the cluster dies with its test; durability is not what it is for.
      await asPostgres('pg_ctl', ['-D', dir, '-l', log, '-o', `-k ${dir} -c listen_addresses='' -c fsync=off`, '-w', 'start']);
    } catch (err) {
      const text = await readFile(log, 'utf8').catch(() => '(no server log)');
      throw new Error(`PostgreSQL did not start: ${String(err)}\n${text}`, { cause: err });
    }
    admin = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: urlOf('postgres'), max: 1 }) }) });
    const db = admin;
    return {
      dir,
      urlOf,
      createDatabase: async (name) => {
        await sql`create database ${sql.id(name)}`.execute(db);
        return urlOf(name);
      },
      dropDatabase: async (name) => {
        await sql`drop database ${sql.id(name)} with (force)`.execute(db);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
