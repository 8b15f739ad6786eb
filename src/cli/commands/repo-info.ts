import { statfs } from 'node:fs/promises';
import { isObjectLocation, locationText, repositoryRoot } from '../../repository/index.js';
import { capacityUsage } from '../../repository/capacity-tier.js';
import { filePlaces } from '../../repository/tiered-storage.js';
import { fromFsError } from '../../core/errors.js';
import { formatBytes } from '../../core/units.js';
import type { Command } from '../command.js';
import { JSON_OPTION, REPO_OPTION, requireString } from '../command.js';
import { storedBytes } from '../point-report.js';

export const repoInfo: Command = {
  name: 'repo info',
  usage: 'repo info --repo <dir> [--json]',
  summary: "show each job's points and bytes of backup files, and the free space of the repository's file system",
  positionals: [],
  options: {
    repo: REPO_OPTION,
    json: JSON_OPTION,
  },
  async run(ctx) {
    const repo = repositoryRoot(requireString(ctx, 'repo'));
    const names = await ctx.service.listJobs(repo);
    const onCapacity = isObjectLocation(repo) ? undefined : await capacityUsage(repo, names);
    const jobs = [];
    for (const name of names) {
      const { points, state } = await ctx.service.points(repo, name);
      // Every backup file of the job, damaged ones too: they take space until repaired or deleted.
      const files = new Set<string>([
        ...state.chains.flatMap((c) => [...c.rollbacks, c.full, ...c.increments].map((f) => f.name)),
        ...state.damaged.map((d) => d.file),
      ]);
      // A moved file is counted on the capacity tier, not here: `bytes` is what the repository's own folder holds.
      const places = onCapacity && (await filePlaces(state.storage, state.dir, [...files]));
      let bytes = 0;
      for (const f of files) if (places?.get(f) !== 'capacity') bytes += await storedBytes(state, f).catch(() => 0);
      jobs.push({
        name,
        points: points.length,
        unavailablePoints: state.unavailable.length,
        files: files.size,
        bytes,
        ...(onCapacity?.get(name) === undefined ? {} : { capacityBytes: onCapacity.get(name)! }),
      });
    }
    // An object store has no free space to ask for.
    const fs = isObjectLocation(repo)
      ? undefined
      : await statfs(repo).catch((err: unknown) => {
          throw fromFsError(err, 'reading the free space of', repo);
        });
    const immutableDays = (await ctx.service.repositoryConfig(repo)).immutableDays;
    const doc = {
      repo,
      ...(immutableDays === undefined ? {} : { immutableDays }),
      jobs,
      bytes: jobs.reduce((a, j) => a + j.bytes, 0),
      ...(onCapacity ? { capacityBytes: jobs.reduce((a, j) => a + (j.capacityBytes ?? 0), 0) } : {}),
      // What an unprivileged writer can still use (bavail), as df shows it.
      freeBytes: fs === undefined ? null : fs.bavail * fs.bsize,
      totalBytes: fs === undefined ? null : fs.blocks * fs.bsize,
    };
    if (ctx.values['json'] === true) return ctx.out(JSON.stringify(doc, null, 2));
    ctx.out(
      `repository ${locationText(repo)}${immutableDays === undefined ? '' : ` (immutable: each backup file is kept immutable for at least ${immutableDays} day(s) and until retention may delete it)`}`,
    );
    const width = Math.max(3, ...jobs.map((j) => j.name.length));
    for (const j of jobs)
      ctx.out(
        `  ${j.name.padEnd(width)}  ${j.points} point${j.points === 1 ? '' : 's'}${j.unavailablePoints > 0 ? ` (+${j.unavailablePoints} unavailable)` : ''}, ${j.files} file${j.files === 1 ? '' : 's'}, ${formatBytes(j.bytes)}${j.capacityBytes === undefined ? '' : ` here, ${formatBytes(j.capacityBytes)} on the capacity tier`}`,
      );
    if (jobs.length === 0) ctx.out('  no jobs');
    ctx.out(
      `  total ${formatBytes(doc.bytes)} in backup files${doc.capacityBytes === undefined ? '' : ` here, ${formatBytes(doc.capacityBytes)} on the capacity tier`}; ${doc.freeBytes === null || doc.totalBytes === null ? 'object storage' : `file system: ${formatBytes(doc.freeBytes)} free of ${formatBytes(doc.totalBytes)}`}`,
    );
  },
};
