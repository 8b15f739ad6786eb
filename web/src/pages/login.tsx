import { useState } from 'preact/hooks';
import { ApiError } from '../api';
import { login } from '../session';
import { ErrorNote } from '../ui';

/** The login form: the API sets the session cookie; its refusal (a wrong password, too many tries) is shown as it said it. */
export function LoginPage() {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await login(user, password);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 422 ? new Error('Enter a user name and a password.') : err);
      setPassword('');
      setBusy(false);
    }
  };
  return (
    <section class="login card" aria-labelledby="login-title">
      <h1 id="login-title">Lifeboat</h1>
      <p class="muted">Log in to the console.</p>
      <form onSubmit={(e) => void submit(e)}>
        <div class="field">
          <label for="login-user">User name</label>
          <input id="login-user" name="username" autocomplete="username" required value={user} onInput={(e) => setUser(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="login-password">Password</label>
          <input
            id="login-password"
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </div>
        <ErrorNote error={error} />
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </section>
  );
}
