/**
 * File-level recovery of one point: its volumes (disks, partitions, LVM
 * volumes, file systems), then the folders of a file system with
 * breadcrumbs, and a download of each file (as it is) and each folder (tar).
 * Reads only GET …/points/{point}/files and …/files/download; the first
 * request waits while the server boots the point's appliance.
 */
import { useState } from 'preact/hooks';
import { seg } from '../api';
import { bytes, time } from '../format';
import { ErrorNote, useApi } from '../ui';

interface Volume {
  id: string;
  kind: string;
  type?: string;
  size: number;
  label?: string;
  mounted: boolean;
  problem?: string;
}
interface Entry {
  name: string;
  path: string;
  type: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  target?: string;
}
interface Listing {
  pointId: string;
  volumes: Volume[];
  path?: string;
  entries?: Entry[];
}

const TYPE_LETTER: Record<string, string> = { file: '-', directory: 'd', symlink: 'l', 'block-device': 'b', 'char-device': 'c', fifo: 'p', socket: 's' };

function modeText(e: Entry): string {
  const bits = 'rwxrwxrwx'
    .split('')
    .map((c, i) => ((e.mode >> (8 - i)) & 1 ? c : '-'))
    .join('');
  return (TYPE_LETTER[e.type] ?? '?') + bits;
}

/** `disk0p2:/etc/x` → the file system and the folders on the way, each with the path it opens. */
function crumbs(path: string): { label: string; path: string }[] {
  const colon = path.indexOf(':');
  const fs = path.slice(0, colon);
  const parts = path
    .slice(colon + 1)
    .split('/')
    .filter((p) => p !== '');
  return [{ label: fs, path: `${fs}:/` }, ...parts.map((p, i) => ({ label: p, path: `${fs}:/${parts.slice(0, i + 1).join('/')}` }))];
}

function Opening() {
  return (
    <div class="card files-opening" role="status" aria-live="polite">
      <progress aria-label="Opening the point's file systems" />
      <p>Opening the point's file systems, about 30 s (the server boots a small appliance that reads the point's disks)…</p>
    </div>
  );
}

export function FilesPage({ repo, job, point }: { repo: string; job: string; point: string }) {
  const [path, setPath] = useState<string | undefined>();
  const base = `/repositories/${seg(repo)}/jobs/${seg(job)}/points/${seg(point)}/files`;
  const { data, error, loading } = useApi<Listing>(path === undefined ? base : `${base}?path=${encodeURIComponent(path)}`);
  const downloadHref = (p: string): string => `/api/v1${base}/download?path=${encodeURIComponent(p)}`;
  const shown = data && (path === undefined ? data.path === undefined : data.path === path) ? data : undefined;

  return (
    <section class="files-page" aria-labelledby="files-title" data-ready={shown || error ? 'true' : undefined}>
      <header class="page-head">
        <h1 id="files-title">
          Files of <a href={`#/jobs/${seg(repo)}/${seg(job)}/points`}>{job}</a> at point <code>{data?.pointId.slice(0, 12) ?? point}</code>
        </h1>
      </header>
      <nav aria-label="Breadcrumb" class="toolbar">
        <span>
          {path === undefined ? (
            <span aria-current="page">Volumes</span>
          ) : (
            <button type="button" class="btn btn-plain" onClick={() => setPath(undefined)}>
              Volumes
            </button>
          )}
        </span>
        {path !== undefined &&
          crumbs(path).map((c, i, all) => (
            <span key={c.path}>
              {'/ '}
              {i === all.length - 1 ? (
                <span aria-current="page">{c.label}</span>
              ) : (
                <button type="button" class="btn btn-plain" onClick={() => setPath(c.path)}>
                  {c.label}
                </button>
              )}
            </span>
          ))}
      </nav>
      <ErrorNote error={error} />
      {loading && !data && <Opening />}
      {loading && data && (
        <p role="status" class="muted">
          Reading…
        </p>
      )}
      {shown && path === undefined && (
        <div class="card table-wrap">
          <table aria-label="Volumes of the point">
            <thead>
              <tr>
                <th>id</th>
                <th>kind</th>
                <th>type</th>
                <th class="num">size</th>
                <th>label</th>
                <th>state</th>
              </tr>
            </thead>
            <tbody>
              {shown.volumes.map((v) => (
                <tr key={v.id} data-volume={v.id}>
                  <td>
                    {v.mounted ? (
                      <button type="button" class="btn btn-plain" onClick={() => setPath(`${v.id}:/`)} aria-label={`Browse ${v.id}`}>
                        {v.id}
                      </button>
                    ) : (
                      v.id
                    )}
                  </td>
                  <td>{v.kind}</td>
                  <td>{v.type ?? '—'}</td>
                  <td class="num">{bytes(v.size)}</td>
                  <td>{v.label ?? ''}</td>
                  <td>{v.mounted ? 'readable' : v.problem ? <span title={v.problem}>not mountable</span> : <span class="muted">no file system</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {shown && path !== undefined && (
        <div class="card table-wrap">
          <p>
            <a class="btn" href={downloadHref(path)} download>
              Download this folder (.tar)
            </a>
          </p>
          <table aria-label={`Entries of ${path}`}>
            <thead>
              <tr>
                <th>name</th>
                <th>mode</th>
                <th>owner</th>
                <th class="num">size</th>
                <th>modified</th>
                <th aria-label="download" />
              </tr>
            </thead>
            <tbody>
              {(shown.entries ?? []).map((e) => (
                <tr key={e.path} data-entry={e.name}>
                  <td>
                    {e.type === 'directory' ? (
                      <button type="button" class="btn btn-plain" onClick={() => setPath(e.path)} aria-label={`Open folder ${e.name}`}>
                        {e.name}/
                      </button>
                    ) : (
                      <span>{e.name}</span>
                    )}
                    {e.target !== undefined && <span class="muted"> → {e.target}</span>}
                  </td>
                  <td>
                    <code>{modeText(e)}</code>
                  </td>
                  <td>
                    {e.uid}:{e.gid}
                  </td>
                  <td class="num">{e.type === 'file' ? bytes(e.size) : ''}</td>
                  <td>{time(e.mtime)}</td>
                  <td>
                    {e.type === 'file' && (
                      <a href={downloadHref(e.path)} download={e.name} aria-label={`Download ${e.name}`}>
                        Download
                      </a>
                    )}
                    {e.type === 'directory' && (
                      <a href={downloadHref(e.path)} download={`${e.name}.tar`} aria-label={`Download folder ${e.name} as tar`}>
                        Download .tar
                      </a>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {shown.entries?.length === 0 && <p class="muted">This folder is empty.</p>}
        </div>
      )}
    </section>
  );
}
