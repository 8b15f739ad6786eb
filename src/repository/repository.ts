import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LifeboatError, isLifeboatError } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { formatCompression, parseCompression, type CompressionSetting } from '../compress/codec.js';
import { BLOCK_SIZES } from '../format/constants.js';
import type { Storage } from '../storage/index.js';
import { ObjectFileStorage, type CollectReport } from '../objects/object-files.js';
import { isObjectLocation, locationText, openLocation } from './location.js';
import { immutableObjectRule } from './object-retention.js';
import { probeImmutable, setImmutable } from '../storage/immutable-flag.js';
import { readCheckedJson, writeCheckedJson } from './checked-json.js';
import { newKeyFile, rememberKeys, type BlockKeys } from '../crypto/index.js';
import { KEY_FILE, readKeyFile, unlockRepository, writeKeyFile, type EncryptionConfig } from './repo-keys.js';

export const REPO_CONFIG = 'lifeboat.json';
export const REPO_FORMAT = 'lifeboat-repository';
export const REPO_VERSION = 1;

export interface RepositoryConfig {
  readonly format: typeof REPO_FORMAT;
  readonly version: number;
  readonly repoId: string;
  readonly createdAt: string;
  readonly blockSize: number;
  /** e.g. "zstd:1", "lz4", "none" */
  readonly compression: string;
  /**
   * An immutable (hardened) repository: each committed backup file gets the
   * file system's immutable attribute for at least this many days
   * (repository/immutability.ts). Absent in repositories made without it.
   */
  readonly immutableDays?: number | undefined;
  /** An encrypted repository (`repo init --encrypt`): its key's id; the wrapped key is in keys/key.json. Absent: plain. */
  readonly encryption?: EncryptionConfig | undefined;
}

/** How `repo init` encrypts: a new key wrapped by `password` (and a recovery key), or the key file of another repository (a copy target). */
export type InitEncryption = { readonly password: string; readonly recovery: boolean } | { readonly keyFrom: Repository };

/** Where a repository's files are: the local file system unless a test (or, later, encryption or object storage) says otherwise. */
export interface RepositoryOptions {
  readonly storage?: Storage | undefined;
  /** Open an encrypted repository without unlocking it (`repo key export`, `repo passwd`): its backup files cannot be read then. */
  readonly locked?: boolean | undefined;
}

/**
 * A repository: a folder with lifeboat.json and jobs/<job>/. Everything in it
 * is described by its files; cache/ may be deleted at any time. Every file of
 * it is read and written through `storage`, which every operation on the
 * repository (backup runs, merges, compact, verify) passes down.
 */
export class Repository {
  private constructor(
    readonly root: string,
    readonly config: RepositoryConfig,
    readonly storage: Storage,
    /** An encrypted repository's keys once unlocked (also in the process's keyring); undefined for a plain or locked one. */
    readonly keys: BlockKeys | undefined = undefined,
    /** `repo init --encrypt --recovery-key`: the recovery key, to be printed once; never stored. */
    readonly recoveryKey: string | undefined = undefined,
  ) {}

  get compression(): CompressionSetting {
    return parseCompression(this.config.compression);
  }

  jobsDir(): string {
    return join(this.root, 'jobs');
  }

  jobDir(job: string): string {
    return join(this.root, 'jobs', job);
  }

  static async init(
    dir: string,
    opts: {
      blockSize: number;
      compression: CompressionSetting;
      now: Date;
      immutableDays?: number | undefined;
      encrypt?: InitEncryption | undefined;
    } & RepositoryOptions,
  ): Promise<Repository> {
    if (!(BLOCK_SIZES as readonly number[]).includes(opts.blockSize)) {
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--block-size must be one of 256K, 512K, 1M, 4M`);
    }
    if (opts.immutableDays !== undefined && (!Number.isInteger(opts.immutableDays) || opts.immutableDays < 1))
      throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--immutable-days must be a whole number ≥ 1, not ${String(opts.immutableDays)}`);
    const { root, storage } = await openLocation(dir, opts.storage, { objectLock: opts.immutableDays !== undefined });
    // Only a folder that is not there lists as nothing: a failure to list is no proof of an empty place (it could hold a repository).
    const entries = await storage.list(root);
    if (entries.includes(REPO_CONFIG))
      throw new LifeboatError('LFB_ERR_REPO_EXISTS', `${locationText(root)} is already a Lifeboat repository`, { details: { repo: root } });
    if (entries.length > 0)
      throw new LifeboatError('LFB_ERR_REPO_EXISTS', `${locationText(root)} is not empty; choose an empty or new folder for a repository`, {
        details: { repo: root },
      });
    const existed =
      isObjectLocation(root) ||
      (await stat(root).then(
        () => true,
        () => false,
      ));
    await storage.mkdir(join(root, 'jobs'));
    await storage.mkdir(join(root, 'cache'));
    if (opts.immutableDays !== undefined && storage instanceof ObjectFileStorage) {
      // The bucket has object lock (openLocation refused one without): every backup file's objects get its date as written.
      storage.setRetention(immutableObjectRule(opts.immutableDays));
    } else if (opts.immutableDays !== undefined) {
      // Proven on a probe file before the repository exists: a file system that cannot never gets a repository that pretends.
      await probeImmutable(join(root, 'cache')).catch(async (err: unknown) => {
        await rm(existed ? join(root, 'jobs') : root, { recursive: true, force: true });
        if (existed) await rm(join(root, 'cache'), { recursive: true, force: true });
        throw err;
      });
    }
    // The key file goes down before lifeboat.json: a repository that says it is encrypted always has its key.
    let keys: BlockKeys | undefined;
    let recoveryKey: string | undefined;
    let encryption: EncryptionConfig | undefined;
    if (opts.encrypt !== undefined) {
      if ('keyFrom' in opts.encrypt) {
        const from = opts.encrypt.keyFrom;
        const enc = from.config.encryption;
        if (enc === undefined) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--key-from: ${from.root} is not an encrypted repository`);
        await writeKeyFile(root, await readKeyFile(from.root, enc.keyId, from.storage), storage);
        encryption = enc;
        keys = from.keys;
      } else {
        const made = newKeyFile(opts.encrypt.password, opts.now, opts.encrypt.recovery);
        await writeKeyFile(root, made.file, storage);
        encryption = { keyId: made.file.keyId, cipher: 'aes-256-gcm', digest: 'hmac-sha256' };
        keys = made.keys;
        recoveryKey = made.recoveryKey;
      }
    }
    const config: RepositoryConfig = {
      format: REPO_FORMAT,
      version: REPO_VERSION,
      repoId: newUuid(),
      createdAt: opts.now.toISOString(),
      blockSize: opts.blockSize,
      compression: formatCompression(opts.compression),
      ...(opts.immutableDays === undefined ? {} : { immutableDays: opts.immutableDays }),
      ...(encryption === undefined ? {} : { encryption }),
    };
    await writeCheckedJson(join(root, REPO_CONFIG), config, storage);
    // Sealed for good: its immutableDays bounds every file's date (immutability.ts nameFloor), so it must not be lowered.
    if (opts.immutableDays !== undefined && !(storage instanceof ObjectFileStorage)) await setImmutable([join(root, REPO_CONFIG)], true);
    if (keys !== undefined) rememberKeys(root, keys);
    else if (encryption !== undefined) keys = await unlockRepository(root, encryption, storage);
    return new Repository(root, config, storage, keys, recoveryKey);
  }

  static async open(dir: string, opts: RepositoryOptions = {}): Promise<Repository> {
    const { root, storage } = await openLocation(dir, opts.storage);
    const path = join(root, REPO_CONFIG);
    // A path that is a file is no repository either; any other failure to list is an I/O error, reported as one.
    const names = await storage.list(root).catch((err: unknown) => {
      if (isLifeboatError(err, 'LFB_ERR_IO') && err.details['errno'] === 'ENOTDIR') return [] as string[];
      throw err;
    });
    if (!names.includes(REPO_CONFIG)) {
      throw new LifeboatError(
        'LFB_ERR_REPO_NOT_FOUND',
        `${locationText(root)} is not a Lifeboat repository (no ${REPO_CONFIG}); create one with \`lifeboat repo init ${dir}\``,
        { details: { repo: root } },
      );
    }
    const config = await readCheckedJson<RepositoryConfig>(path, 'LFB_ERR_REPO_CORRUPT', storage);
    if (config.format !== REPO_FORMAT) throw new LifeboatError('LFB_ERR_REPO_CORRUPT', `${path}: not a Lifeboat repository config`);
    if (config.version !== REPO_VERSION) {
      throw new LifeboatError(
        'LFB_ERR_REPO_VERSION',
        `${root}: repository format version ${config.version} is not supported by this Lifeboat (supports ${REPO_VERSION}); use a matching Lifeboat release`,
        { details: { repo: root, version: config.version } },
      );
    }
    if (config.immutableDays !== undefined && storage instanceof ObjectFileStorage) storage.setRetention(immutableObjectRule(config.immutableDays));
    // Unlocked at once: a missing or wrong password stops the command before any work.
    const keys = config.encryption !== undefined && opts.locked !== true ? await unlockRepository(root, config.encryption, storage) : undefined;
    return new Repository(root, config, storage, keys);
  }

  /**
   * This host's folder for the repository's host side (an instant-recovery
   * server's lock, control file, sessions and caches): the repository's folder,
   * or its store's host folder for one on object storage.
   */
  get hostRoot(): string {
    return this.storage.hostPath?.(this.root) ?? this.root;
  }

  /** The key file of an encrypted repository (its wrapped key material). */
  keyFilePath(): string {
    return join(this.root, KEY_FILE);
  }

  /**
   * On object storage: removes the packs no file names any more (older than
   * `graceMs`) and stale roots (ObjectFileStorage.collect). Undefined for a
   * repository in a folder, whose files free their space as they go.
   */
  async collectObjects(graceMs?: number): Promise<CollectReport | undefined> {
    return this.storage instanceof ObjectFileStorage ? this.storage.collect(graceMs) : undefined;
  }

  async listJobs(): Promise<string[]> {
    // On objects a folder is a name prefix: only folders are under jobs/.
    if (isObjectLocation(this.root)) return (await this.storage.list(this.jobsDir())).sort();
    const names = await readdir(this.jobsDir(), { withFileTypes: true }).catch(() => []);
    return names
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  }
}
