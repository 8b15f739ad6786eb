/**
 * Starts an instant-recovery session (POST /sessions): a repository, a job,
 * a point (the newest by default), optionally a name, and optionally boot
 * the VM on this server with `instant start --boot`'s options (accelerator,
 * network). The server checks again who may choose which network.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, seg } from '../../api';
import type { JobSummary, RepositoryUsage } from '../../api-types';
import { time } from '../../format';
import { canAdminister, useMe } from '../../session';
import { Button, ErrorNote, Field, useApi } from '../../ui';
import type { Session } from './model';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

interface PointRow {
  id: string;
  createdAt: string;
  kind: string;
}

export function StartSessionForm({ onStarted }: { onStarted: (s: Session) => void }) {
  const me = useMe();
  const repos = useApi<{ repositories: RepositoryUsage[] }>('/repositories');
  const [repo, setRepo] = useState('');
  const [job, setJob] = useState('');
  const [point, setPoint] = useState('latest');
  const [name, setName] = useState('');
  const [boot, setBoot] = useState(false);
  const [accel, setAccel] = useState('');
  const [network, setNetwork] = useState('none');
  const [customNic, setCustomNic] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();

  // The first repository until one is chosen.
  useEffect(() => {
    const first = repos.data?.repositories[0]?.name;
    if (repo === '' && first !== undefined) setRepo(first);
  }, [repos.data]);
  const jobs = useApi<{ jobs: JobSummary[] }>(repo === '' ? null : `/repositories/${seg(repo)}/jobs`);
  useEffect(() => {
    const names = jobs.data?.jobs.map((j) => j.job.name) ?? [];
    if (!names.includes(job)) setJob(names[0] ?? '');
  }, [jobs.data]);
  const points = useApi<{ points: PointRow[] }>(repo === '' || job === '' ? null : `/repositories/${seg(repo)}/jobs/${seg(job)}/points`);
  useEffect(() => setPoint('latest'), [repo, job]);

  const nameError = name !== '' && !NAME_RE.test(name) ? 'letters, digits, . _ - (1-64 characters, not starting with . _ -)' : undefined;
  const nic = network === 'custom' ? customNic.trim() : network;

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    if (nameError || repo === '' || job === '' || nic === '') return;
    setBusy(true);
    setError(undefined);
    try {
      const body = {
        repo,
        job,
        point,
        ...(name !== '' ? { name } : {}),
        ...(boot ? { boot: { network: nic, ...(accel !== '' ? { accel } : {}) } } : {}),
      };
      const s = await api.post<Session>('/sessions', body);
      setName('');
      onStarted(s);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const newestFirst = [...(points.data?.points ?? [])].reverse();
  return (
    <section class="card" aria-labelledby="start-session-title">
      <h2 id="start-session-title">Start a session</h2>
      <p class="hint">Publishes a point's disks over NFS and NBD at once, writes going to an overlay; with boot, QEMU runs the VM here from them.</p>
      <form class="form session-start" onSubmit={(e) => void submit(e)} data-form="start-session">
        <div class="form-grid">
          <Field label="Repository">
            {(p) => (
              <select {...p} name="repo" value={repo} onChange={(e) => setRepo(e.currentTarget.value)}>
                {(repos.data?.repositories ?? []).map((r) => (
                  <option key={r.name} value={r.name}>
                    {r.name}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Job" hint={jobs.data && jobs.data.jobs.length === 0 ? 'this repository has no jobs' : undefined}>
            {(p) => (
              <select {...p} name="job" value={job} onChange={(e) => setJob(e.currentTarget.value)}>
                {(jobs.data?.jobs ?? []).map((j) => (
                  <option key={j.job.name} value={j.job.name}>
                    {j.job.name}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Point">
            {(p) => (
              <select {...p} name="point" value={point} onChange={(e) => setPoint(e.currentTarget.value)}>
                <option value="latest">the newest</option>
                {newestFirst.map((pt) => (
                  <option key={pt.id} value={pt.id}>
                    {time(pt.createdAt)} · {pt.kind} · {pt.id.slice(0, 8)}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Session name" hint="optional; the server picks one when empty" error={nameError}>
            {(p) => <input {...p} name="name" type="text" value={name} onInput={(e) => setName(e.currentTarget.value)} />}
          </Field>
        </div>
        <label class="check">
          <input type="checkbox" name="boot" checked={boot} onChange={(e) => setBoot(e.currentTarget.checked)} /> Boot the VM on this server (QEMU)
        </label>
        {boot && (
          <div class="form-grid">
            <Field label="Accelerator" hint="KVM when usable, else TCG; a guest KVM cannot run starts again under TCG">
              {(p) => (
                <select {...p} name="accel" value={accel} onChange={(e) => setAccel(e.currentTarget.value)}>
                  <option value="">automatic</option>
                  <option value="kvm">kvm</option>
                  <option value="tcg">tcg</option>
                </select>
              )}
            </Field>
            <Field label="VM network" hint="isolated: a NIC that reaches nothing outside the VM">
              {(p) => (
                <select {...p} name="network" value={network} onChange={(e) => setNetwork(e.currentTarget.value)}>
                  <option value="none">none</option>
                  <option value="isolated">isolated</option>
                  {canAdminister(me) && <option value="custom">a -nic setting (admins)</option>}
                </select>
              )}
            </Field>
            {network === 'custom' && (
              <Field label="-nic setting" hint="passed to QEMU as -nic">
                {(p) => (
                  <input
                    {...p}
                    name="nic"
                    type="text"
                    required
                    value={customNic}
                    placeholder="bridge,br=br0"
                    onInput={(e) => setCustomNic(e.currentTarget.value)}
                  />
                )}
              </Field>
            )}
          </div>
        )}
        <div class="form-actions">
          <Button type="submit" kind="primary" mutating busy={busy} disabled={job === ''}>
            {busy ? 'Starting…' : boot ? 'Start and boot' : 'Start session'}
          </Button>
        </div>
      </form>
      <ErrorNote error={error ?? repos.error ?? jobs.error ?? points.error} />
    </section>
  );
}
