/**
 * The console's shell: asks who is logged in, shows the login page or the
 * page the hash names (a hash router: the server serves one index.html, and
 * every page is a client-side route), with the header's navigation.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { match, routes } from './routes';
import { loadSession, logout, useMe, useSessionKnown } from './session';
import { LoginPage } from './pages/login';

function currentPath(): string {
  const h = location.hash.replace(/^#/, '');
  return h.startsWith('/') ? h.split('?')[0]! : '/';
}

function useHashPath(): string {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const on = (): void => setPath(currentPath());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return path;
}

function Header({ path }: { path: string }) {
  const me = useMe();
  return (
    <header class="top">
      <a class="brand" href="#/">
        Lifeboat
      </a>
      <nav aria-label="Main">
        <ul>
          {routes
            .filter((r) => r.nav !== undefined)
            .map((r) => {
              const active = r.path === '/' ? path === '/' : path === r.path || path.startsWith(`${r.path}/`);
              return (
                <li key={r.path}>
                  <a href={`#${r.path}`} aria-current={active ? 'page' : undefined}>
                    {r.nav}
                  </a>
                </li>
              );
            })}
        </ul>
      </nav>
      {me && (
        <div class="who">
          <span>
            {me.user} <small class="role">({me.role})</small>
          </span>
          <button type="button" class="btn btn-plain btn-small" onClick={() => void logout()}>
            Log out
          </button>
        </div>
      )}
    </header>
  );
}

function App() {
  const known = useSessionKnown();
  const me = useMe();
  const path = useHashPath();
  const found = match(path);
  useEffect(() => {
    document.title = me === null ? 'Log in · Lifeboat' : `${found?.route.title ?? 'Not found'} · Lifeboat`;
  }, [me, found?.route.title]);
  if (!known) return <main class="loading" aria-busy="true" />;
  if (me === null)
    return (
      <main id="main" class="login-main">
        <LoginPage />
      </main>
    );
  return (
    <>
      <Header path={path} />
      <main id="main">
        {found ? (
          // A new key per path: a page's state starts afresh when the hash names another job or run.
          <div key={path}>{found.route.view(found.params)}</div>
        ) : (
          <section>
            <h1>Not found</h1>
            <p>
              The console has no page <code>{path}</code>. <a href="#/">Dashboard</a>
            </p>
          </section>
        )}
      </main>
    </>
  );
}

void loadSession();
render(<App />, document.getElementById('app')!);
