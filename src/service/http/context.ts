/**
 * What every route file shares: the dependencies, and the repositories by
 * the short names URLs use (the folder's base name; a second folder with the
 * same base name gets -2, -3… in the order given).
 */
import { basename } from 'node:path';
import { repositoryRoot } from '../../repository/index.js';
import { LifeboatError } from '../../core/errors.js';
import type { InstantRecovery } from '../../recovery/index.js';
import type { HttpApiDeps, JobRunner } from './deps.js';

export const API_PREFIX = '/api/v1';

export interface ApiContext {
  readonly deps: HttpApiDeps;
  /** name → root, in the order given. */
  readonly repos: ReadonlyMap<string, string>;
  /** The root of the repository a URL names, or LFB_ERR_REPO_NOT_FOUND. */
  repoRoot(name: string): string;
  /** The URL name of a repository root (the root itself when this server does not serve it). */
  repoName(root: string): string;
  /** The sessions of a repository, or LFB_ERR_SERVER_NOT_RUNNING when this server runs no instant recovery for it. */
  recovery(name: string): InstantRecovery;
  /** What starts and stops runs, or LFB_ERR_SERVER_NOT_RUNNING when this server runs no jobs. */
  runner(): JobRunner;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function repoNames(roots: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const given of roots) {
    const root = repositoryRoot(given);
    if ([...out.values()].includes(root)) continue;
    let base = basename(root)
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '');
    if (!NAME_RE.test(base)) base = 'repo';
    base = base.slice(0, 60);
    let name = base;
    for (let n = 2; out.has(name); n++) name = `${base}-${n}`;
    out.set(name, root);
  }
  return out;
}

export function apiContext(deps: HttpApiDeps): ApiContext {
  const repos = repoNames(deps.repos);
  const byRoot = new Map([...repos].map(([name, root]) => [root, name]));
  const recoveries = new Map([...(deps.recovery ?? new Map<string, InstantRecovery>())].map(([root, r]) => [repositoryRoot(root), r]));
  // A root the catalog spells otherwise (or of a repository this server no longer serves): resolved once, not at every run of every page.
  const others = new Map<string, string>();
  const otherName = (root: string): string => {
    let name = others.get(root);
    if (name === undefined) {
      name = byRoot.get(repositoryRoot(root)) ?? root;
      if (others.size >= 1024) others.clear();
      others.set(root, name);
    }
    return name;
  };
  const repoRoot = (name: string): string => {
    const root = repos.get(name);
    if (root === undefined)
      throw new LifeboatError('LFB_ERR_REPO_NOT_FOUND', `this server has no repository "${name}" (see GET /api/v1/repositories)`, { details: { repo: name } });
    return root;
  };
  return {
    deps,
    repos,
    repoRoot,
    // The catalog keeps resolved roots: a page of 1000 runs asks 1000 times.
    repoName: (root) => byRoot.get(root) ?? otherName(root),
    recovery(name) {
      const root = repoRoot(name);
      const r = recoveries.get(root);
      if (r === undefined) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', `this server runs no instant recovery for repository "${name}"`);
      return r;
    },
    runner() {
      if (deps.runner === undefined) throw new LifeboatError('LFB_ERR_SERVER_NOT_RUNNING', 'this server runs no jobs (it was started without a scheduler)');
      return deps.runner;
    },
  };
}
