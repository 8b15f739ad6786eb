import { parseCompression, DEFAULT_COMPRESSION, formatCompression } from '../../compress/codec.js';
import { formatBytes, parseSize } from '../../core/units.js';
import type { Command } from '../command.js';
import { optionalString } from '../command.js';

export const repoInit: Command = {
  name: 'repo init',
  usage: 'repo init <dir> [--block-size 256K|512K|1M|4M] [--compression none|lz4|zstd[:LEVEL]] [--immutable-days N] [--json]',
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
    json: { type: 'boolean', description: 'print the repository created as JSON', defaultText: 'human-readable text' },
  },
  async run(ctx) {
    const bs = parseSize(optionalString(ctx, 'block-size') ?? '1M', '--block-size');
    const c = ctx.values['compression'] === undefined ? DEFAULT_COMPRESSION : parseCompression(String(ctx.values['compression']));
    const days = optionalString(ctx, 'immutable-days');
    const immutableDays = days === undefined ? undefined : /^\d+$/.test(days) ? Number(days) : NaN;
    const repo = await ctx.service.initRepository(ctx.args[0]!, bs, c, immutableDays === undefined ? {} : { immutableDays });
    if (ctx.values['json'] === true)
      return ctx.out(
        JSON.stringify({ repo: repo.root, blockSize: bs, compression: formatCompression(c), ...(immutableDays === undefined ? {} : { immutableDays }) }),
      );
    ctx.out(
      `created repository ${repo.root} (block size ${formatBytes(bs)}, compression ${formatCompression(c)}${immutableDays === undefined ? '' : `, immutable backup files for at least ${immutableDays} day(s)`})`,
    );
  },
};
