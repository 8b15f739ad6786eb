import { formatBytes } from '../../core/units.js';
import { describeDamage } from '../../repository/index.js';
import { filePlaces } from '../../repository/tiered-storage.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, requireString } from '../command.js';
import { changesOf, describeChanges, filesByPoint, storedBytes } from '../point-report.js';

export const points: Command = {
  name: 'points',
  usage: 'points <job> --repo <dir> [--json]',
  summary: 'list restore points',
  positionals: ['job'],
  options: {
    repo: REPO_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const { points: list, state } = await ctx.service.points(requireString(ctx, 'repo'), ctx.args[0]!);
    const rows = [
      ...list.map((p) => {
        const damage = state.damagedPoints.get(p.id);
        return damage
          ? {
              ...p,
              available: false as const,
              problem: describeDamage(damage),
              code: damage.files.length > 0 ? 'LFB_ERR_FILE_CORRUPT' : 'LFB_ERR_BLOCK_CORRUPT',
            }
          : { ...p, available: true as const };
      }),
      ...state.unavailable.map((u) => ({
        id: u.id,
        createdAt: u.createdAt,
        kind: u.kind,
        file: u.file,
        available: false as const,
        problem: u.problem,
        code: u.code,
      })),
    ].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    // How each point's changes were found, and what its file takes on disk beside the disks' size.
    const files = filesByPoint(state);
    const sizes = new Map<string, number | null>();
    for (const p of rows) if (!sizes.has(p.file)) sizes.set(p.file, await storedBytes(state, p.file).catch(() => null));
    // A point a copy job made records the source point it is a copy of (its root's meta.copyOf).
    const copyOf = (id: string): unknown => (files.get(id)?.root.meta as { copyOf?: unknown } | undefined)?.copyOf;
    // In a repository with a capacity tier: where each point's file is (local, capacity, both).
    const places = await filePlaces(state.storage, state.dir, [...new Set(rows.map((p) => p.file))]);
    const reported = rows.map((p) => {
      const of = copyOf(p.id);
      const place = places?.get(p.file);
      return {
        ...p,
        storedBytes: sizes.get(p.file) ?? null,
        changes: changesOf(files.get(p.id)),
        ...(of === undefined ? {} : { copyOf: of }),
        ...(place === undefined ? {} : { place }),
      };
    });
    if (ctx.values['json'] === true) {
      ctx.out(JSON.stringify(reported, null, 2));
    } else {
      // File names are longer than the other columns and vary: the column is as wide as the longest.
      const fileWidth = Math.max(6, ...reported.map((p) => p.file.length)) + 2;
      ctx.out(
        [
          'ID'.padEnd(14),
          'CREATED'.padEnd(26),
          'KIND'.padEnd(11),
          'DISK'.padEnd(11),
          'STORED'.padEnd(11),
          ...(places ? ['WHERE'.padEnd(10)] : []),
          'FILE'.padEnd(fileWidth),
          'CHANGES',
        ].join(''),
      );
      for (const p of reported) {
        const size = 'diskSizes' in p ? formatBytes(p.diskSizes.reduce((a, b) => a + b, 0)) : '-';
        const stored = p.storedBytes === null ? '-' : formatBytes(p.storedBytes);
        ctx.out(
          [
            p.id.padEnd(14),
            p.createdAt.padEnd(26),
            p.kind.padEnd(11),
            size.padEnd(11),
            stored.padEnd(11),
            ...(places ? [(places.get(p.file) ?? '-').padEnd(10)] : []),
            p.file.padEnd(fileWidth),
            describeChanges(p.changes),
            p.available ? '' : `  UNAVAILABLE [${p.code}]`,
          ].join(''),
        );
      }
    }
    // Problems go to stderr too, on a terminal or not: a damaged backup must never go unnoticed.
    for (const u of rows) if (!u.available) process.stderr.write(`lifeboat: warning: point ${u.id} is not restorable: ${u.problem} [${u.code}]\n`);
  },
};
