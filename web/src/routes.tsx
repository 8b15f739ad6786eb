/**
 * Every page of the console, by its hash path (`#/jobs/backups/vm`). A
 * path's `:name` parts become the view's params. `nav` puts a page in the
 * header's navigation. test/console.test.ts walks this list as a viewer,
 * so a page added here is checked for unmarked changing buttons.
 */
import type { JSX } from 'preact';
import { DashboardPage } from './pages/dashboard';
import { JobsPage, JobPage } from './pages/jobs';
import { JobFormPage } from './pages/job-form';
import { RunPage } from './pages/run';
import { PointsPage } from './pages/points';
import { RestorePage } from './pages/restore';
import { SessionsPage } from './pages/sessions';
import { ScreenPage } from './pages/screen';
import { SureBackupPage, SureBackupReportPage } from './pages/surebackup';
import { FilesPage } from './pages/files';
import { CopiesPage } from './pages/copies';

export interface Route {
  path: string;
  title: string;
  nav?: string;
  view: (params: Record<string, string>) => JSX.Element;
}

export const routes: Route[] = [
  { path: '/', title: 'Dashboard', nav: 'Dashboard', view: () => <DashboardPage /> },
  { path: '/jobs', title: 'Jobs', nav: 'Jobs', view: () => <JobsPage /> },
  { path: '/jobs/new', title: 'New job', view: () => <JobFormPage /> },
  { path: '/jobs/:repo/:job', title: 'Job', view: (p) => <JobPage repo={p['repo']!} job={p['job']!} /> },
  { path: '/jobs/:repo/:job/edit', title: 'Edit job', view: (p) => <JobFormPage repo={p['repo']!} job={p['job']!} /> },
  { path: '/runs/:id', title: 'Run', view: (p) => <RunPage id={Number(p['id'])} /> },
  { path: '/jobs/:repo/:job/points', title: 'Restore points', view: (p) => <PointsPage repo={p['repo']!} job={p['job']!} /> },
  { path: '/restore/:repo/:job/:point', title: 'Restore', view: (p) => <RestorePage repo={p['repo']!} job={p['job']!} point={p['point']!} /> },
  { path: '/files/:repo/:job/:point', title: 'Files', view: (p) => <FilesPage repo={p['repo']!} job={p['job']!} point={p['point']!} /> },
  { path: '/sessions', title: 'Sessions', nav: 'Sessions', view: () => <SessionsPage /> },
  { path: '/sessions/:repo/:name/screen', title: 'Screen', view: (p) => <ScreenPage repo={p['repo']!} name={p['name']!} /> },
  { path: '/surebackup', title: 'SureBackup', nav: 'SureBackup', view: () => <SureBackupPage /> },
  { path: '/surebackup/:repo', title: 'SureBackup', view: (p) => <SureBackupPage repo={p['repo']!} /> },
  { path: '/copies', title: 'Copies', nav: 'Copies', view: () => <CopiesPage /> },
  { path: '/copies/:repo', title: 'Copies', view: (p) => <CopiesPage repo={p['repo']!} /> },
  { path: '/surebackup/:repo/:report', title: 'SureBackup report', view: (p) => <SureBackupReportPage repo={p['repo']!} id={p['report']!} /> },
];

/** The route a hash path names, with its params; undefined when none does. */
export function match(path: string): { route: Route; params: Record<string, string> } | undefined {
  const parts = path.split('/').filter(Boolean);
  // Literal segments win over params (`/jobs/new` before `/jobs/:repo/:job`): try the routes with fewer params first.
  const ordered = [...routes].sort((a, b) => (a.path.match(/:/g)?.length ?? 0) - (b.path.match(/:/g)?.length ?? 0));
  for (const route of ordered) {
    const want = route.path.split('/').filter(Boolean);
    if (want.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < want.length && ok; i++) {
      const w = want[i]!;
      const p = parts[i]!;
      if (w.startsWith(':')) params[w.slice(1)] = decodeURIComponent(p);
      else ok = w === p;
    }
    if (ok) return { route, params };
  }
  return undefined;
}

/** The hash link of a path (segments encoded). */
export function href(...segments: (string | number)[]): string {
  return `#/${segments.map((s) => encodeURIComponent(String(s))).join('/')}`;
}
