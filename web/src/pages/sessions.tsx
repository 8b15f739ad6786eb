/**
 * Instant-recovery sessions: every session of every repository with its
 * state, disks, overlay size and growth, client read and write rates, its VM, and its migration; start
 * one (optionally booting its VM), and per session add a disk, migrate,
 * stop, and open the VM's screen. The list is read again every few seconds
 * (the rates are differences between two readings).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { Button, ErrorNote } from '../ui';
import { RateMeter, type Session, type SessionRates } from './sessions/model';
import { SessionCard } from './sessions/session-card';
import { StartSessionForm } from './sessions/start-form';

const POLL_MS = 3000;

export function SessionsPage() {
  const [sessions, setSessions] = useState<Session[] | undefined>();
  const [rates, setRates] = useState<Map<string, SessionRates>>(new Map());
  const [error, setError] = useState<unknown>();
  const meter = useRef(new RateMeter());
  const [n, setN] = useState(0);
  const reload = (): void => setN((x) => x + 1);

  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async (): Promise<void> => {
      try {
        const r = await api.get<{ sessions: Session[] }>('/sessions');
        if (!live) return;
        setSessions(r.sessions);
        setRates(meter.current.update(r.sessions, performance.now()));
        setError(undefined);
      } catch (err) {
        if (live) setError(err);
      }
      if (live) timer = setTimeout(() => void load(), POLL_MS);
    };
    void load();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [n]);

  /** A session as an action or its event stream answered it: shown at once, without waiting for the next reading. */
  const replace = (s: Session): void => setSessions((list) => (list ?? []).map((x) => (x.repo === s.repo && x.name === s.name ? s : x)));

  // Oldest first, whatever order an answer had: a card does not move under the pointer when the list is read again.
  const ordered = [...(sessions ?? [])].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.repo.localeCompare(b.repo) || a.name.localeCompare(b.name));

  return (
    <section class="sessions-page" aria-labelledby="sessions-title" data-ready={sessions || error ? 'true' : undefined}>
      <header class="page-head toolbar">
        <h1 id="sessions-title">Instant-recovery sessions</h1>
        <span class="spacer" />
        <Button onClick={reload}>Refresh</Button>
      </header>
      <ErrorNote error={error} />
      {sessions && sessions.length === 0 && <p class="muted">No sessions. Start one below, or from a restore point.</p>}
      <div class="session-list">
        {ordered.map((s) => (
          <SessionCard key={`${s.repo}/${s.name}`} session={s} rates={rates.get(`${s.repo}/${s.name}`)} onChange={replace} onStopped={reload} />
        ))}
      </div>
      <StartSessionForm
        onStarted={(s) => {
          setSessions((list) => [...(list ?? []).filter((x) => !(x.repo === s.repo && x.name === s.name)), s]);
          reload();
        }}
      />
    </section>
  );
}
