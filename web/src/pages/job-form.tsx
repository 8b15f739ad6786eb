import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, seg } from '../api';
import { WEEKDAYS, type JobDefinition, type JobSummary, type RepositoryUsage, type Weekday } from '../api-types';
import { href } from '../routes';
import { Button, ErrorNote, Field } from '../ui';

/** The form's values, as typed (text fields stay text until sent). */
interface Form {
  repo: string;
  name: string;
  disks: string;
  /** '': the API's default (forward with full days, else forever forward). */
  method: '' | 'forward' | 'forever' | 'reverse';
  schedule: string;
  window: string;
  retainBy: 'points' | 'days';
  retain: string;
  gfs: boolean;
  weekly: string;
  monthly: string;
  yearly: string;
  cbt: boolean;
  activeFullDays: Weekday[];
  syntheticFullDays: Weekday[];
  retries: string;
  retryDelay: string;
  after: string;
  disabled: boolean;
}

/** The API's field names the form shows errors at (each maps to the control that sets it). */
const FIELDS = [
  'name',
  'disks',
  'method',
  'schedule',
  'window',
  'retainPoints',
  'retainDays',
  'gfs',
  'cbt',
  'activeFullDays',
  'syntheticFullDays',
  'retries',
  'retryDelay',
  'after',
  'disabled',
] as const;
type FieldName = (typeof FIELDS)[number];

/**
 * Which field an API refusal is about: a schema failure names it
 * (`body/retainPoints must be >= 1`, `must have required property 'name'`),
 * and the service's own checks mention the setting by its API name.
 * undefined: the message is about the whole job (shown above the buttons).
 */
export function fieldOf(message: string): FieldName | undefined {
  const schema = /body\/(\w+)/.exec(message) ?? /property '(\w+)'/.exec(message);
  const named = schema?.[1];
  if (named && (FIELDS as readonly string[]).includes(named)) return named as FieldName;
  const words: string[] = message.match(/[A-Za-z]+/g) ?? [];
  return FIELDS.find((f) => words.includes(f)) ?? (/cron|schedule/i.test(message) ? 'schedule' : /window/i.test(message) ? 'window' : undefined);
}

function fromJob(repo: string, j: JobDefinition): Form {
  return {
    repo,
    name: j.name,
    disks: j.disks.join('\n'),
    method: j.method,
    schedule: j.schedule ?? '',
    window: j.window ?? '',
    retainBy: j.retainDays !== undefined ? 'days' : 'points',
    retain: String(j.retainDays ?? j.retainPoints),
    gfs: j.gfs !== undefined,
    weekly: String(j.gfs?.weekly ?? 0),
    monthly: String(j.gfs?.monthly ?? 0),
    yearly: String(j.gfs?.yearly ?? 0),
    cbt: j.cbt === true,
    activeFullDays: [...j.activeFullDays],
    syntheticFullDays: [...(j.syntheticFullDays ?? [])],
    retries: j.retries !== undefined ? String(j.retries) : '',
    retryDelay: j.retryDelay ?? '',
    after: j.after ?? '',
    disabled: j.disabled === true,
  };
}

const EMPTY: Form = {
  repo: '',
  name: '',
  disks: '',
  method: '',
  schedule: '',
  window: '',
  retainBy: 'points',
  retain: '7',
  gfs: false,
  weekly: '0',
  monthly: '0',
  yearly: '0',
  cbt: false,
  activeFullDays: [],
  syntheticFullDays: [],
  retries: '',
  retryDelay: '',
  after: '',
  disabled: false,
};

/** A number field's value as the API takes it: a number when it is one, else the text (the API says what is wrong with it). */
const num = (s: string): number | string => (/^-?\d+$/.test(s.trim()) ? Number(s.trim()) : s.trim());

/** The settings as `job create` takes them (everything the form shows). */
function createBody(f: Form): Record<string, unknown> {
  return {
    name: f.name.trim(),
    disks: f.disks
      .split('\n')
      .map((d) => d.trim())
      .filter(Boolean),
    ...(f.method !== '' ? { method: f.method } : {}),
    ...(f.schedule.trim() ? { schedule: f.schedule.trim() } : {}),
    ...(f.window.trim() ? { window: f.window.trim() } : {}),
    ...(f.retainBy === 'days' ? { retainDays: num(f.retain) } : { retainPoints: num(f.retain) }),
    ...(f.gfs ? { gfs: { weekly: num(f.weekly), monthly: num(f.monthly), yearly: num(f.yearly) } } : {}),
    cbt: f.cbt,
    activeFullDays: f.activeFullDays,
    syntheticFullDays: f.syntheticFullDays,
    ...(f.retries.trim() ? { retries: num(f.retries) } : {}),
    ...(f.retryDelay.trim() ? { retryDelay: f.retryDelay.trim() } : {}),
    ...(f.after.trim() ? { after: f.after.trim() } : {}),
    disabled: f.disabled,
  };
}

/** What changed, as `job set` takes it: only the settings that differ; a cleared optional setting is null. */
function changeBody(before: Form, f: Form): Record<string, unknown> {
  const now = createBody(f);
  const was = createBody(before);
  const out: Record<string, unknown> = {};
  for (const key of new Set([...Object.keys(now), ...Object.keys(was)])) {
    if (key === 'name') continue;
    if (JSON.stringify(now[key]) === JSON.stringify(was[key])) continue;
    if (key in now) out[key] = now[key];
    // retainPoints and retainDays replace each other: sending the new one is enough.
    else if (key !== 'retainPoints' && key !== 'retainDays' && key !== 'retries' && key !== 'retryDelay') out[key] = null;
  }
  return out;
}

function Days({ legend, value, onChange }: { legend: string; value: Weekday[]; onChange: (v: Weekday[]) => void }) {
  return (
    <fieldset>
      <legend>{legend}</legend>
      <div class="days">
        {WEEKDAYS.map((d) => (
          <label key={d} class="check">
            <input
              type="checkbox"
              name={`${legend}-${d}`}
              checked={value.includes(d)}
              onChange={(e) => onChange(e.currentTarget.checked ? WEEKDAYS.filter((x) => x === d || value.includes(x)) : value.filter((x) => x !== d))}
            />
            {d}
          </label>
        ))}
      </div>
    </fieldset>
  );
}

/** Create a job (no repo/job) or change one: the API checks everything and its refusals are shown at the field they name. */
export function JobFormPage({ repo, job }: { repo?: string; job?: string }) {
  const editing = repo !== undefined && job !== undefined;
  const [form, setForm] = useState<Form | undefined>(editing ? undefined : EMPTY);
  const [original, setOriginal] = useState<Form | undefined>();
  const [repos, setRepos] = useState<RepositoryUsage[]>([]);
  const [loadError, setLoadError] = useState<unknown>();
  const [errors, setErrors] = useState<Partial<Record<FieldName, string>>>({});
  const [formError, setFormError] = useState<unknown>();
  const [warnings, setWarnings] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (editing) {
      api.get<JobSummary>(`/repositories/${seg(repo)}/jobs/${seg(job)}`).then((s) => {
        const f = fromJob(repo, s.job);
        setForm(f);
        setOriginal(f);
      }, setLoadError);
    } else {
      api.get<{ repositories: RepositoryUsage[] }>('/repositories').then((r) => {
        setRepos(r.repositories);
        setForm((f) => (f && f.repo === '' && r.repositories[0] ? { ...f, repo: r.repositories[0].name } : f));
      }, setLoadError);
    }
  }, [editing, repo, job]);

  if (loadError) return <ErrorNote error={loadError} />;
  if (!form) return <p aria-busy="true">Loading…</p>;
  const set = <K extends keyof Form>(k: K, v: Form[K]): void => setForm({ ...form, [k]: v });
  const err = (k: FieldName): string | undefined => errors[k];
  const retainError = err('retainPoints') ?? err('retainDays');

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setErrors({});
    setFormError(undefined);
    try {
      if (editing) {
        const body = changeBody(original!, form);
        if (Object.keys(body).length > 0) await api.patch(`/repositories/${seg(repo)}/jobs/${seg(job)}`, body);
        location.hash = href('jobs', repo, job);
      } else {
        const r = await api.post<{ warnings: string[] }>(`/repositories/${seg(form.repo)}/jobs`, createBody(form));
        setWarnings(r.warnings);
        if (r.warnings.length === 0) location.hash = href('jobs', form.repo, form.name.trim());
      }
    } catch (error) {
      const field = error instanceof ApiError && error.status === 422 ? fieldOf(error.message) : undefined;
      if (field) setErrors({ [field]: error instanceof Error ? error.message : String(error) });
      else setFormError(error);
    } finally {
      setBusy(false);
    }
  };

  if (warnings.length > 0)
    return (
      <section aria-labelledby="form-title">
        <h1 id="form-title">Job created</h1>
        <ul>
          {warnings.map((w) => (
            <li key={w}>{w}</li>
          ))}
        </ul>
        <a href={href('jobs', form.repo, form.name.trim())}>Open the job</a>
      </section>
    );

  return (
    <section aria-labelledby="form-title">
      <h1 id="form-title">{editing ? `Edit ${repo}/${job}` : 'New job'}</h1>
      <form class="card" onSubmit={(e) => void submit(e)} noValidate>
        <div class="form-grid">
          {!editing && (
            <Field label="Repository">
              {(a) => (
                <select {...a} name="repo" value={form.repo} onChange={(e) => set('repo', e.currentTarget.value)}>
                  {repos.map((r) => (
                    <option key={r.name} value={r.name}>
                      {r.name} ({r.root})
                    </option>
                  ))}
                </select>
              )}
            </Field>
          )}
          {!editing && (
            <Field label="Name" error={err('name')} hint="letters, digits, . _ -">
              {(a) => <input {...a} name="name" required value={form.name} onInput={(e) => set('name', e.currentTarget.value)} />}
            </Field>
          )}
          <Field label="Disks" error={err('disks')} hint="one per line: image files, block devices or nbd:// URIs on the server">
            {(a) => <textarea {...a} name="disks" rows={3} value={form.disks} onInput={(e) => set('disks', e.currentTarget.value)} />}
          </Field>
          <Field label="Method" error={err('method')}>
            {(a) => (
              <select {...a} name="method" value={form.method} onChange={(e) => set('method', e.currentTarget.value as Form['method'])}>
                {!editing && <option value="">chosen by the full days</option>}
                <option value="forward">forward incremental</option>
                <option value="forever">forever forward</option>
                <option value="reverse">reverse incremental</option>
              </select>
            )}
          </Field>
          <Field label="Schedule" error={err('schedule')} hint="cron: 5 fields (or 6 with seconds first); empty: run only on demand">
            {(a) => <input {...a} name="schedule" value={form.schedule} placeholder="0 22 * * *" onInput={(e) => set('schedule', e.currentTarget.value)} />}
          </Field>
          <Field label="Window" error={err('window')} hint="HH:MM-HH:MM: runs start only inside it">
            {(a) => <input {...a} name="window" value={form.window} placeholder="20:00-06:00" onInput={(e) => set('window', e.currentTarget.value)} />}
          </Field>
        </div>
        <fieldset>
          <legend>Retention</legend>
          <div class="form-grid">
            <Field label="Keep by">
              {(a) => (
                <select {...a} name="retainBy" value={form.retainBy} onChange={(e) => set('retainBy', e.currentTarget.value as Form['retainBy'])}>
                  <option value="points">restore points</option>
                  <option value="days">days</option>
                </select>
              )}
            </Field>
            <Field label={form.retainBy === 'days' ? 'Days to keep' : 'Points to keep'} error={retainError}>
              {(a) => <input {...a} name="retain" inputMode="numeric" value={form.retain} onInput={(e) => set('retain', e.currentTarget.value)} />}
            </Field>
          </div>
          <label class="check">
            <input type="checkbox" name="gfs" checked={form.gfs} onChange={(e) => set('gfs', e.currentTarget.checked)} />
            Keep GFS points (weekly, monthly, yearly fulls)
          </label>
          {form.gfs && (
            <div class="form-grid">
              <Field label="Weekly" error={err('gfs')}>
                {(a) => <input {...a} name="gfsWeekly" inputMode="numeric" value={form.weekly} onInput={(e) => set('weekly', e.currentTarget.value)} />}
              </Field>
              <Field label="Monthly">
                {(a) => <input {...a} name="gfsMonthly" inputMode="numeric" value={form.monthly} onInput={(e) => set('monthly', e.currentTarget.value)} />}
              </Field>
              <Field label="Yearly">
                {(a) => <input {...a} name="gfsYearly" inputMode="numeric" value={form.yearly} onInput={(e) => set('yearly', e.currentTarget.value)} />}
              </Field>
            </div>
          )}
        </fieldset>
        <Days legend="Active full days" value={form.activeFullDays} onChange={(v) => set('activeFullDays', v)} />
        {err('activeFullDays') && <small class="field-error">{err('activeFullDays')}</small>}
        <Days legend="Synthetic full days" value={form.syntheticFullDays} onChange={(v) => set('syntheticFullDays', v)} />
        {err('syntheticFullDays') && <small class="field-error">{err('syntheticFullDays')}</small>}
        <div class="form-grid">
          <Field label="Retries" error={err('retries')} hint="how often a failed run is tried again">
            {(a) => <input {...a} name="retries" inputMode="numeric" value={form.retries} onInput={(e) => set('retries', e.currentTarget.value)} />}
          </Field>
          <Field label="Retry delay" error={err('retryDelay')} hint="e.g. 10m">
            {(a) => <input {...a} name="retryDelay" value={form.retryDelay} onInput={(e) => set('retryDelay', e.currentTarget.value)} />}
          </Field>
          <Field label="After job" error={err('after')} hint="run right after this job of the repository ends">
            {(a) => <input {...a} name="after" value={form.after} onInput={(e) => set('after', e.currentTarget.value)} />}
          </Field>
        </div>
        <label class="check">
          <input type="checkbox" name="cbt" checked={form.cbt} onChange={(e) => set('cbt', e.currentTarget.checked)} />
          Changed-block tracking (dirty bitmaps of a running VM)
        </label>
        {err('cbt') && <small class="field-error">{err('cbt')}</small>}
        <label class="check">
          <input type="checkbox" name="disabled" checked={form.disabled} onChange={(e) => set('disabled', e.currentTarget.checked)} />
          Disabled (the scheduler does not start it)
        </label>
        <ErrorNote error={formError} />
        <div class="toolbar">
          <Button mutating="admin" kind="primary" type="submit" busy={busy}>
            {editing ? 'Save changes' : 'Create job'}
          </Button>
          <a href={editing ? href('jobs', repo, job) : '#/jobs'}>Cancel</a>
        </div>
      </form>
    </section>
  );
}
