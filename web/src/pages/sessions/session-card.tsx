/**
 * One instant-recovery session: its state, disks (NFS and NBD paths, what
 * each overlay holds), the VM Lifeboat booted, overlay growth, and what an
 * operator may do: open the screen, add a disk, migrate (progress followed
 * live over Server-Sent Events), stop (after a confirmation).
 */
import { useEffect, useState } from 'preact/hooks';
import { api, events } from '../../api';
import { age, bytes, rate, time } from '../../format';
import { href } from '../../routes';
import { canOperate, useMe } from '../../session';
import { Button, CopyButton, Dialog, ErrorNote, Field, ProgressBar, StateBadge, useAction } from '../../ui';
import { hasScreen, migrating, migrationProgress, noScreenReason, overlayBytes, overlayNearFull, sessionPath, type Session, type SessionRates } from './model';

const UNITS = { MB: 1e6, GB: 1e9, GiB: 2 ** 30 } as const;

function AddDiskDialog({ session, open, onClose, onDone }: { session: Session; open: boolean; onClose: () => void; onDone: (s: Session) => void }) {
  const [size, setSize] = useState('1');
  const [unit, setUnit] = useState<keyof typeof UNITS>('GB');
  const [name, setName] = useState('');
  const { busy, error, run } = useAction();
  const n = Number(size);
  // Whole 512-byte sectors, as the API takes them.
  const bytesWanted = Math.ceil((n * UNITS[unit]) / 512) * 512;
  const sizeError = size !== '' && !(n > 0 && Number.isFinite(n)) ? 'a positive number' : undefined;
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    if (sizeError || size === '') return;
    await run(async () => {
      onDone(await api.post<Session>(sessionPath(session, '/disks'), { size: bytesWanted, ...(name !== '' ? { name } : {}) }));
      onClose();
    });
  };
  return (
    <Dialog open={open} title={`Add a disk to ${session.name}`} onClose={onClose}>
      <form class="form" onSubmit={(e) => void submit(e)} data-form="add-disk">
        <p class="hint">An empty disk, published like the others{session.vm?.state === 'running' ? ' and hot-plugged into the running VM' : ''}.</p>
        <div class="form-grid">
          <Field label="Size" error={sizeError} hint={bytesWanted > 0 ? `${bytes(bytesWanted)}` : undefined}>
            {(p) => <input {...p} name="size" type="number" min="0" step="any" required value={size} onInput={(e) => setSize(e.currentTarget.value)} />}
          </Field>
          <Field label="Unit">
            {(p) => (
              <select {...p} name="unit" value={unit} onChange={(e) => setUnit(e.currentTarget.value as keyof typeof UNITS)}>
                {Object.keys(UNITS).map((u) => (
                  <option key={u} value={u}>
                    {u}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Disk name" hint="optional">
            {(p) => <input {...p} name="disk-name" type="text" value={name} onInput={(e) => setName(e.currentTarget.value)} />}
          </Field>
        </div>
        <ErrorNote error={error} />
        <DialogActions label="Add disk" busy={busy} onCancel={onClose} />
      </form>
    </Dialog>
  );
}

/** A dialog form's submit button (it changes something: disabled for viewers) and its Cancel. */
function DialogActions({ label, busy, onCancel }: { label: string; busy: boolean; onCancel: () => void }) {
  return (
    <div class="form-actions">
      <Button type="submit" kind="primary" mutating busy={busy}>
        {label}
      </Button>
      <Button onClick={onCancel}>Cancel</Button>
    </div>
  );
}

function MigrateDialog({ session, open, onClose, onDone }: { session: Session; open: boolean; onClose: () => void; onDone: (s: Session) => void }) {
  const [to, setTo] = useState('');
  const [format, setFormat] = useState<'raw' | 'qcow2'>('raw');
  const [mbps, setMbps] = useState('');
  const { busy, error, run } = useAction();
  const toError = to !== '' && !to.startsWith('/') ? 'an absolute folder on the server (starting with /)' : undefined;
  const rateError = mbps !== '' && !(Number(mbps) > 0) ? 'a positive number, or empty for no limit' : undefined;
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    if (to === '' || toError || rateError) return;
    await run(async () => {
      onDone(await api.post<Session>(sessionPath(session, '/migrate'), { to, format, ...(mbps !== '' ? { rate: Number(mbps) * 1e6 } : {}) }));
      onClose();
    });
  };
  return (
    <Dialog open={open} title={`Migrate ${session.name} to production storage`} onClose={onClose}>
      <form class="form" onSubmit={(e) => void submit(e)} data-form="migrate">
        <p class="hint">
          {session.vm?.state === 'running'
            ? 'QEMU mirrors every disk into the folder while the VM runs, then the VM runs on those files: stopping the session afterwards leaves it running.'
            : 'Copies every disk into the folder while the session keeps serving; when the copy is in sync, Finish makes the final pass (clients must have detached).'}
        </p>
        <Field label="To folder" hint="on the server" error={toError}>
          {(p) => <input {...p} name="to" type="text" required value={to} placeholder="/srv/vms/web01/" onInput={(e) => setTo(e.currentTarget.value)} />}
        </Field>
        <div class="form-grid">
          <Field label="Format">
            {(p) => (
              <select {...p} name="format" value={format} onChange={(e) => setFormat(e.currentTarget.value as 'raw' | 'qcow2')}>
                <option value="raw">raw</option>
                <option value="qcow2">qcow2</option>
              </select>
            )}
          </Field>
          <Field label="Rate limit (MB/s)" hint="empty: no limit" error={rateError}>
            {(p) => <input {...p} name="rate" type="number" min="0" step="any" value={mbps} onInput={(e) => setMbps(e.currentTarget.value)} />}
          </Field>
        </div>
        <ErrorNote error={error} />
        <DialogActions label="Start migration" busy={busy} onCancel={onClose} />
      </form>
    </Dialog>
  );
}

function StopDialog({ session, open, onClose, onDone }: { session: Session; open: boolean; onClose: () => void; onDone: () => void }) {
  const { busy, error, run } = useAction();
  const stop = (): Promise<void> =>
    run(async () => {
      await api.del(sessionPath(session));
      onClose();
      onDone();
    });
  const written = overlayBytes(session);
  // A VM QEMU has mirrored to production storage is no longer the session's: stop lets it run.
  const released = session.vm?.state === 'running' && session.migration?.mode === 'mirror' && session.migration.state === 'done';
  return (
    <Dialog open={open} title={`Stop session ${session.name}?`} onClose={onClose}>
      <p>
        {released ? 'Its VM keeps running on the migrated disks; ' : session.vm?.state === 'running' ? 'Its VM is powered off, ' : ''}
        its overlays ({bytes(written)} written since it started) are discarded and its point is released. This cannot be undone.
      </p>
      <ErrorNote error={error} />
      <div class="form-actions">
        <Button kind="danger" mutating busy={busy} onClick={() => void stop()} data-action="confirm-stop">
          Stop session
        </Button>
        <Button onClick={onClose}>Cancel</Button>
      </div>
    </Dialog>
  );
}

/** A migration's progress: live from the session's event stream while it moves. */
function MigrationStatus({ session, onChange }: { session: Session; onChange: (s: Session) => void }) {
  const m = session.migration!;
  const live = migrating(m);
  const { busy, error, run } = useAction();
  useEffect(() => {
    if (!live) return;
    return events(sessionPath(session, '/events'), { session: (d) => onChange(d as Session) });
  }, [session.repo, session.name, live]);
  const { copied, total } = migrationProgress(m);
  const finish = (): Promise<void> => run(async () => onChange(await api.post<Session>(sessionPath(session, '/migrate'), { finish: true })));
  return (
    <div class="session-migration" data-migration={m.state}>
      <h3>
        Migration to <code>{m.to}</code> ({m.format}, {m.mode}) <StateBadge state={m.state} />
      </h3>
      <ProgressBar value={copied} max={total} label={`Migration of ${session.name}`} text={`${bytes(copied)} of ${bytes(total)}`} />
      {m.rateBytesPerSec !== null && <p class="muted">limited to {rate(m.rateBytesPerSec)}</p>}
      {m.problem && <p class="point-problem">{m.problem}</p>}
      {m.mode === 'copy' && (m.state === 'copying' || m.state === 'synced') && (
        <Button mutating busy={busy || m.state === 'copying'} onClick={() => void finish()} title="the final pass: the VM then runs from the target">
          {m.state === 'copying' ? 'Finish (when in sync)' : 'Finish migration'}
        </Button>
      )}
      <ErrorNote error={error} />
    </div>
  );
}

/** One rate of a session, as bytes per second ('—' until two readings were taken). */
function RateStat({ label, stat, value, title }: { label: string; stat: string; value: number | undefined; title: string }) {
  return (
    <div>
      <dt>{label}</dt>
      <dd data-stat={stat} title={title}>
        {rate(value)}
      </dd>
    </div>
  );
}

export function SessionCard({
  session,
  rates,
  onChange,
  onStopped,
}: {
  session: Session;
  rates: SessionRates | undefined;
  onChange: (s: Session) => void;
  onStopped: () => void;
}) {
  const me = useMe();
  const [dialog, setDialog] = useState<'disk' | 'migrate' | 'stop' | null>(null);
  const s = session;
  const vm = s.vm;
  const screenWhyNot = noScreenReason(s);
  const titleId = `session-${s.repo}-${s.name}`;
  return (
    <article class="card session" aria-labelledby={titleId} data-session={s.name}>
      <header class="session-head">
        <h2 id={titleId}>{s.name}</h2>
        <StateBadge state={s.state} />
        <span class="muted">
          {s.repo} / {s.job} · point <code title={s.pointId}>{s.pointId.slice(0, 8)}</code> · started {age(s.createdAt)}
        </span>
      </header>
      {s.problem && <p class="point-problem">{s.problem}</p>}
      <dl class="stats session-stats">
        <div>
          <dt>Overlay</dt>
          <dd data-stat="overlay">{bytes(overlayBytes(s))}</dd>
        </div>
        <RateStat
          label="Overlay growth"
          stat="growth"
          value={rates?.growth}
          title="bytes the overlays took per second since the last look (new data written)"
        />
        <RateStat label="Reads" stat="read" value={rates?.read} title="bytes clients read per second since the last look (NFS and NBD)" />
        <RateStat label="Writes" stat="write" value={rates?.write} title="bytes clients wrote per second since the last look (NFS and NBD)" />
        {s.overlayFreeBytes !== null && (
          <div>
            <dt>Overlay space free</dt>
            <dd data-stat="overlay-free" class={overlayNearFull(s) ? 'alert-bad' : undefined}>
              {bytes(s.overlayFreeBytes)}
            </dd>
          </div>
        )}
        <div>
          <dt>VM</dt>
          <dd data-stat="vm">
            {vm ? (
              <>
                <StateBadge state={vm.state} /> {vm.accel}, network {vm.network}, pid {vm.pid}
              </>
            ) : (
              'not booted here'
            )}
          </dd>
        </div>
      </dl>
      {vm?.accelNote && <p class="muted">{vm.accelNote}</p>}
      {vm?.exit && <p class="muted">VM: {vm.exit}</p>}
      <div class="table-wrap">
        <table aria-label={`Disks of ${s.name}`}>
          <thead>
            <tr>
              <th>disk</th>
              <th class="num">size</th>
              <th class="num">overlay</th>
              <th>NFS path</th>
              <th>NBD export</th>
            </tr>
          </thead>
          <tbody>
            {s.disks.map((d) => (
              <tr key={d.name}>
                <td>{d.name}</td>
                <td class="num">{bytes(d.size)}</td>
                <td class="num">{bytes(d.writtenBytes)}</td>
                <td>
                  <code class="path">{d.nfsPath}</code> <CopyButton text={d.nfsPath} />
                </td>
                <td>
                  <code class="path">{d.nbdExport}</code> <CopyButton text={d.nbdExport} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {s.migration && <MigrationStatus session={s} onChange={onChange} />}
      <div class="toolbar session-actions">
        {canOperate(me) && hasScreen(s) && (
          <a class="btn btn-primary" href={href('sessions', s.repo, s.name, 'screen')}>
            Screen
          </a>
        )}
        {canOperate(me) && vm && screenWhyNot && <span class="muted">No screen: {screenWhyNot}</span>}
        <Button mutating onClick={() => setDialog('disk')}>
          Add disk
        </Button>
        <Button mutating onClick={() => setDialog('migrate')} disabled={migrating(s.migration)}>
          Migrate
        </Button>
        <Button mutating kind="danger" onClick={() => setDialog('stop')}>
          Stop
        </Button>
      </div>
      <AddDiskDialog session={s} open={dialog === 'disk'} onClose={() => setDialog(null)} onDone={onChange} />
      <MigrateDialog session={s} open={dialog === 'migrate'} onClose={() => setDialog(null)} onDone={onChange} />
      <StopDialog session={s} open={dialog === 'stop'} onClose={() => setDialog(null)} onDone={onStopped} />
      <p class="muted session-started">Started {time(s.createdAt)}</p>
    </article>
  );
}
