/**
 * The screen of a VM Lifeboat booted for an instant-recovery session: noVNC
 * (from npm, loaded only on this page) speaking RFB with QEMU through the
 * server's WebSocket bridge (GET /api/v1/sessions/{name}/screen, the login
 * cookie; the server checks the role and this page's origin). Keys and
 * clicks reach the VM, so only operators and admins get a screen: a viewer
 * is told so and nothing connects.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type RFB from '@novnc/novnc';
import { api, query, seg } from '../api';
import { canOperate, useMe } from '../session';
import { Button, ErrorNote, StateBadge } from '../ui';
import { noScreenReason, sessionPath, type Session } from './sessions/model';

type Status = 'checking' | 'connecting' | 'connected' | 'disconnected' | 'unavailable';

/** The WebSocket URL of a session's screen on this server (wss when the page came over HTTPS). */
function screenUrl(repo: string, name: string): string {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/api/v1/sessions/${seg(name)}/screen${query({ repo })}`;
}

export function ScreenPage({ repo, name }: { repo: string; name: string }) {
  const me = useMe();
  const allowed = canOperate(me);
  const view = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB | undefined>();
  const [status, setStatus] = useState<Status>('checking');
  const [detail, setDetail] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  const [session, setSession] = useState<Session | undefined>();
  const [scale, setScale] = useState(true);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    if (!allowed) return;
    let live = true;
    let connection: RFB | undefined;
    setStatus('checking');
    setDetail(undefined);
    setError(undefined);
    void (async () => {
      try {
        // Asked first, so that a session without a screen is explained instead of refused at the upgrade.
        const s = await api.get<Session>(sessionPath({ repo, name }));
        if (!live) return;
        setSession(s);
        const why = noScreenReason(s);
        if (why !== undefined) {
          setStatus('unavailable');
          setDetail(why);
          return;
        }
        const { default: Rfb } = await import('@novnc/novnc');
        if (!live || !view.current) return;
        setStatus('connecting');
        connection = new Rfb(view.current, screenUrl(repo, name), { shared: true });
        connection.scaleViewport = scale;
        connection.resizeSession = false;
        connection.focusOnClick = true;
        connection.background = 'transparent';
        connection.addEventListener('connect', () => live && setStatus('connected'));
        connection.addEventListener('disconnect', (e) => {
          if (!live) return;
          const clean = (e as CustomEvent<{ clean: boolean }>).detail.clean;
          setStatus('disconnected');
          setDetail(clean ? 'the VM or its session stopped, or the server closed the screen' : 'the connection to the screen was lost');
          // Why, as the server sees it (the list, so that a stopped session is no error answer). The screen closes as
          // QEMU quits, a moment before the session is gone or its VM seen stopped: asked again for a while.
          const explain = (tries: number): void =>
            void api.get<{ sessions: Session[] }>(`/sessions${query({ repo })}`).then(
              (r) => {
                if (!live) return;
                const now = r.sessions.find((x) => x.name === name);
                setSession(now);
                if (now === undefined) setDetail('the session was stopped');
                else if (now.vm?.state !== 'running') setDetail(`the VM stopped (${now.vm?.exit ?? 'exited'})`);
                else if (tries > 1) setTimeout(() => live && explain(tries - 1), 1000);
              },
              () => undefined,
            );
          explain(10);
        });
        connection.addEventListener('securityfailure', (e) => {
          if (live) setDetail(`the VM's VNC server refused: ${(e as CustomEvent<{ reason?: string }>).detail.reason ?? 'security failure'}`);
        });
        rfb.current = connection;
      } catch (err) {
        if (!live) return;
        setStatus('unavailable');
        setError(err);
      }
    })();
    return () => {
      live = false;
      rfb.current = undefined;
      connection?.disconnect();
    };
  }, [repo, name, allowed, attempt]);

  useEffect(() => {
    if (rfb.current) rfb.current.scaleViewport = scale;
  }, [scale]);

  return (
    <section class="screen-page" aria-labelledby="screen-title" data-status={status}>
      <header class="page-head toolbar">
        <h1 id="screen-title">
          Screen of <a href="#/sessions">{name}</a>
        </h1>
        {session?.vm && <StateBadge state={session.vm.state} />}
        <span class="spacer" />
        {allowed && (
          <>
            <Button mutating disabled={status !== 'connected'} onClick={() => rfb.current?.sendCtrlAltDel()}>
              Send Ctrl-Alt-Del
            </Button>
            {/* The canvas takes keys once focused: from the keyboard too, not only by a click. */}
            <Button disabled={status !== 'connected'} onClick={() => rfb.current?.focus()}>
              Type into the screen
            </Button>
            <Button aria-pressed={scale ? 'true' : 'false'} onClick={() => setScale((x) => !x)}>
              Scale to fit
            </Button>
            {(status === 'disconnected' || status === 'unavailable') && <Button onClick={() => setAttempt((x) => x + 1)}>Reconnect</Button>}
          </>
        )}
      </header>
      {!allowed && me && (
        <p class="muted">The screen needs the operator or admin role: keys and clicks reach the VM. The session is listed on the sessions page.</p>
      )}
      {allowed && (
        <p class="muted" role="status" aria-live="polite" data-screen-status={status}>
          {status === 'checking' && 'Looking up the session…'}
          {status === 'connecting' && 'Connecting to the screen…'}
          {status === 'connected' &&
            `Connected${session?.vm ? ` to the VM (${session.vm.accel}, pid ${session.vm.pid})` : ''}. Click the screen to type into it.`}
          {status === 'disconnected' && 'Disconnected'}
          {status === 'unavailable' && 'No screen'}
          {detail && `: ${detail}`}
        </p>
      )}
      <ErrorNote error={error} />
      {allowed && (
        <div class={scale ? 'screen-view screen-scaled' : 'screen-view'} ref={view} aria-label={`Screen of the VM of session ${name}`} role="application" />
      )}
    </section>
  );
}
