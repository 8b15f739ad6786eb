import { parseCompression, DEFAULT_COMPRESSION, formatCompression } from '../../compress/codec.js';
import { formatBytes, parseSize } from '../../core/units.js';
import { LifeboatError } from '../../core/errors.js';
import type { Command } from '../command.js';
import { optionalString } from '../command.js';
import { Repository } from '../../repository/repository.js';
import { locationText } from '../../repository/location.js';
import { newRepositoryPassword } from '../repo-password.js';

export const repoInit: Command = {
  name: 'repo init',
  usage:
    'repo init <dir> [--block-size 256K|512K|1M|4M] [--compression none|lz4|zstd[:LEVEL]] [--immutable-days N] [--encrypt [--password-file F] [--recovery-key] | --key-from <repo>] [--json]',
  summary: 'create a repository',
  positionals: ['dir'],
  options: {
    'block-size': { type: 'string', description: 'size of the blocks backups are cut into and deduplicated by: 256K, 512K, 1M or 4M', defaultText: '1M' },
    compression: {
      type: 'string',
      description: 'codec for stored blocks: none, lz4 or zstd[:LEVEL] (LEVEL -7..19)',
      defaultText: formatCompression(DEFAULT_COMPRESSION),
    },
    'immutable-days': {
      type: 'string',
      description:
        "an immutable (hardened) repository: each backup file, once committed, gets the file system's immutable attribute (ext4/xfs, root) for at least N days (N ≥ 1) and until retention may delete it; only forward incremental jobs run there",
      defaultText: 'backup files stay mutable',
    },
    encrypt: {
      type: 'boolean',
      description:
        'encrypt at rest: every stored block, root and VM configuration sealed with AES-256-GCM under a random data key wrapped by the password (--password-file, LIFEBOAT_PASSWORD_FILE, or typed twice on a terminal)',
      defaultText: 'not encrypted',
    },
    'recovery-key': {
      type: 'boolean',
      description:
        'with --encrypt: also wrap the data key by a random recovery key, printed once here (keep it offline: it resets the password with repo passwd)',
      defaultText: 'no recovery key',
    },
    'key-from': {
      type: 'string',
      description: "encrypted with the key of this (encrypted) repository, whose password is asked: a backup copy target must share its source's key",
      defaultText: 'a new key with --encrypt',
    },
    json: { type: 'boolean', description: 'print the repository created as JSON', defaultText: 'human-readable text' },
  },
  async run(ctx) {
    const bs = parseSize(optionalString(ctx, 'block-size') ?? '1M', '--block-size');
    const c = ctx.values['compression'] === undefined ? DEFAULT_COMPRESSION : parseCompression(String(ctx.values['compression']));
    const days = optionalString(ctx, 'immutable-days');
    const immutableDays = days === undefined ? undefined : /^\d+$/.test(days) ? Number(days) : NaN;
    const keyFrom = optionalString(ctx, 'key-from');
    const encrypt = ctx.values['encrypt'] === true;
    if (keyFrom !== undefined && encrypt)
      throw new LifeboatError('LFB_ERR_USAGE', "--encrypt makes a new key, --key-from takes another repository's: give one");
    if (ctx.values['recovery-key'] === true && !encrypt) throw new LifeboatError('LFB_ERR_USAGE', '--recovery-key goes with --encrypt');
    const base = { ...(immutableDays === undefined ? {} : { immutableDays }) };
    let repo: Repository;
    if (!encrypt && keyFrom === undefined) repo = await ctx.service.initRepository(ctx.args[0]!, bs, c, base);
    else {
      // The password is asked (or read) before anything is made.
      const encryption =
        keyFrom !== undefined
          ? { keyFrom: await Repository.open(keyFrom) }
          : { password: await newRepositoryPassword(undefined, true), recovery: ctx.values['recovery-key'] === true };
      repo = await Repository.init(ctx.args[0]!, { blockSize: bs, compression: c, now: ctx.service.clock.now(), ...base, encrypt: encryption });
    }
    const encrypted = repo.config.encryption !== undefined;
    if (ctx.values['json'] === true)
      return ctx.out(
        JSON.stringify({
          repo: repo.root,
          blockSize: bs,
          compression: formatCompression(c),
          ...(immutableDays === undefined ? {} : { immutableDays }),
          ...(encrypted ? { encrypted, keyId: repo.config.encryption!.keyId } : {}),
          ...(repo.recoveryKey === undefined ? {} : { recoveryKey: repo.recoveryKey }),
        }),
      );
    ctx.out(
      `created repository ${locationText(repo.root)} (block size ${formatBytes(bs)}, compression ${formatCompression(c)}${immutableDays === undefined ? '' : `, immutable backup files for at least ${immutableDays} day(s)`}${encrypted ? ', encrypted (AES-256-GCM)' : ''})`,
    );
    if (repo.recoveryKey !== undefined)
      ctx.out(`recovery key (shown once; keep it offline, it opens the repository without the password):\n  ${repo.recoveryKey}`);
  },
};
