/**
 * Restore from one point, reached from the points page: a full restore of
 * its disks to a path on the server (POST …/jobs/{job}/restore; the server
 * decides whether this user may write there and says why not), or an
 * instant-recovery session (POST /sessions) whose NFS and NBD paths are shown
 * as the API gives them, each with a copy button; and a link to the point's
 * files (file-level recovery, files.tsx).
 */
import { useState } from 'preact/hooks';
import { api, seg } from '../api';
import { bytes, time } from '../format';
import { Button, CopyButton, ErrorNote, Field, StateBadge, useApi } from '../ui';
import { KIND_WORDS, short, type PointList } from './points/model';

interface RestoreReply {
  pointId: string;
  targets: { disk: string; path: string; format: string; bytesWritten: number }[];
}

interface SessionView {
  repo: string;
  name: string;
  job: string;
  pointId: string;
  state: 'running' | 'failed';
  problem?: string;
  disks: { name: string; size: number; nfsPath: string; nbdExport: string; writtenBytes: number }[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function FullRestore({ repo, job, point, disks }: { repo: string; job: string; point: string; disks: number }) {
  const [to, setTo] = useState('');
  const [disk, setDisk] = useState('');
  const [format, setFormat] = useState('');
  const [force, setForce] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [done, setDone] = useState<RestoreReply | undefined>();
  const toError = to !== '' && !to.startsWith('/') ? 'an absolute path on the server (starting with /)' : undefined;

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    if (to === '' || toError) return;
    setBusy(true);
    setError(undefined);
    setDone(undefined);
    try {
      const body = { to, point, ...(disk !== '' ? { disk } : {}), ...(format !== '' ? { format } : {}), ...(force ? { force: true } : {}) };
      setDone(await api.post<RestoreReply>(`/repositories/${seg(repo)}/jobs/${seg(job)}/restore`, body));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card" aria-labelledby="full-restore-title">
      <h2 id="full-restore-title">Full restore to the server</h2>
      <form class="form" onSubmit={(e) => void submit(e)} data-form="restore">
        <Field label="Restore to" hint="a file, or a folder ending in / for every disk (on the server)" error={toError}>
          {(p) => <input {...p} name="to" type="text" required value={to} placeholder="/srv/restore/vm/" onInput={(e) => setTo(e.currentTarget.value)} />}
        </Field>
        {disks > 1 && (
          <Field label="Disk">
            {(p) => (
              <select {...p} name="disk" value={disk} onChange={(e) => setDisk(e.currentTarget.value)}>
                <option value="">every disk</option>
                {Array.from({ length: disks }, (_, i) => (
                  <option key={i} value={String(i)}>
                    disk {i}
                  </option>
                ))}
              </select>
            )}
          </Field>
        )}
        <Field label="Format" hint="raw or qcow2; left to the name's extension when not chosen">
          {(p) => (
            <select {...p} name="format" value={format} onChange={(e) => setFormat(e.currentTarget.value)}>
              <option value="">by the name's extension</option>
              <option value="raw">raw</option>
              <option value="qcow2">qcow2</option>
            </select>
          )}
        </Field>
        <label class="check">
          <input type="checkbox" name="force" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} /> Overwrite an existing target
        </label>
        <div class="form-actions">
          <Button type="submit" kind="primary" mutating busy={busy}>
            {busy ? 'Restoring…' : 'Restore'}
          </Button>
        </div>
      </form>
      <ErrorNote error={error} />
      {done && (
        <div class="result" role="status" data-result="restore">
          <p>
            Point <code>{short(done.pointId)}</code> restored:
          </p>
          <ul>
            {done.targets.map((t) => (
              <li key={t.path}>
                {t.disk} → <code>{t.path}</code> ({t.format}, {bytes(t.bytesWritten)} written)
              </li>
            ))}
          </ul>
        </div>
      )}
    </section>
  );
}

function PathRow({ label, value }: { label: string; value: string }) {
  return (
    <div class="path-row">
      <span class="path-label">{label}</span> <code>{value}</code> <CopyButton text={value} label={`Copy ${label}`} />
    </div>
  );
}

function InstantRecovery({ repo, job, point }: { repo: string; job: string; point: string }) {
  const [name, setName] = useState('');
  const [boot, setBoot] = useState(false);
  const [network, setNetwork] = useState('none');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [session, setSession] = useState<SessionView | undefined>();
  const nameError = name !== '' && !NAME_RE.test(name) ? 'letters, digits, . _ - (1-64 characters, not starting with . _ -)' : undefined;

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    if (nameError) return;
    setBusy(true);
    setError(undefined);
    try {
      const body = { repo, job, point, ...(name !== '' ? { name } : {}), ...(boot ? { boot: { network } } : {}) };
      setSession(await api.post<SessionView>('/sessions', body));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card" aria-labelledby="instant-title">
      <h2 id="instant-title">Instant recovery</h2>
      <p class="hint">Publishes the point's disks over NFS and NBD at once, writes going to an overlay; migrate or stop the session on the sessions page.</p>
      <form class="form" onSubmit={(e) => void submit(e)} data-form="instant">
        <Field label="Session name" hint="optional; the server picks one when empty" error={nameError}>
          {(p) => <input {...p} name="name" type="text" value={name} onInput={(e) => setName(e.currentTarget.value)} />}
        </Field>
        <label class="check">
          <input type="checkbox" name="boot" checked={boot} onChange={(e) => setBoot(e.currentTarget.checked)} /> Boot the VM on this server (QEMU)
        </label>
        {boot && (
          <Field label="VM network">
            {(p) => (
              <select {...p} name="network" value={network} onChange={(e) => setNetwork(e.currentTarget.value)}>
                <option value="none">none</option>
                <option value="isolated">isolated</option>
              </select>
            )}
          </Field>
        )}
        <div class="form-actions">
          <Button type="submit" kind="primary" mutating busy={busy}>
            {busy ? 'Starting…' : 'Start instant recovery'}
          </Button>
        </div>
      </form>
      <ErrorNote error={error} />
      {session && (
        <div class="result" role="status" data-result="session" data-session={session.name}>
          <p>
            Session <strong>{session.name}</strong> <StateBadge state={session.state} /> — see <a href="#/sessions">Sessions</a>.
          </p>
          {session.problem && <p class="point-problem">{session.problem}</p>}
          {session.disks.map((d) => (
            <div key={d.name} class="session-disk" data-disk={d.name}>
              <h3>
                {d.name} ({bytes(d.size)})
              </h3>
              <PathRow label="NFS path" value={d.nfsPath} />
              <PathRow label="NBD export" value={d.nbdExport} />
            </div>
          ))}
        </div>
      )}
    </section>
  );
}

export function RestorePage({ repo, job, point }: { repo: string; job: string; point: string }) {
  const list = useApi<PointList>(`/repositories/${seg(repo)}/jobs/${seg(job)}/points`);
  const p = list.data?.points.find((x) => x.id === point);
  return (
    <section class="restore-page" aria-labelledby="restore-title" data-ready={list.data || list.error ? 'true' : undefined}>
      <header class="page-head">
        <h1 id="restore-title">
          Restore <a href={`#/jobs/${seg(repo)}/${seg(job)}/points`}>{job}</a> from point <code title={point}>{short(point)}</code>
        </h1>
      </header>
      <ErrorNote error={list.error} />
      {list.data && !p && <ErrorNote error={new Error(`job ${job} has no point ${point} (any more): choose one on the points page`)} />}
      {p && (
        <p class="summary">
          {KIND_WORDS[p.kind]} of {time(p.createdAt)}, {p.diskSizes.length} disk{p.diskSizes.length === 1 ? '' : 's'} ({bytes(p.diskBytes)}),{' '}
          <StateBadge state={p.health} />
          {p.problem && <span class="point-problem"> {p.problem}</span>}
        </p>
      )}
      {p && (
        <div class="restore-grid">
          <FullRestore repo={repo} job={job} point={p.id} disks={p.diskSizes.length} />
          <InstantRecovery repo={repo} job={job} point={p.id} />
          <section class="card" aria-labelledby="flr-title">
            <h2 id="flr-title">File-level recovery</h2>
            <p class="hint">Single files and folders out of the point's file systems, read through a small appliance the server boots.</p>
            <p>
              <a href={`#/files/${seg(repo)}/${seg(job)}/${seg(p.id)}`}>Browse the point's files…</a>
            </p>
          </section>
        </div>
      )}
    </section>
  );
}
