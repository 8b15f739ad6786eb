/**
 * Who is logged in. The shell asks GET /me once on load (a 401 shows the
 * login page); login and logout change it. Pages read it with useMe() and
 * decide with canOperate()/canAdminister() what to offer: the server checks
 * every change again, this only keeps a viewer from pressing buttons that
 * would be refused.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, setCsrfToken, setUnauthenticatedHandler } from './api';

export type Role = 'admin' | 'operator' | 'viewer';
export interface Me {
  user: string;
  role: Role;
}

interface MeReply extends Me {
  via: 'token' | 'cookie';
  csrfToken?: string;
  expiresAt?: string;
}
interface LoginReply extends Me {
  csrfToken: string;
  expiresAt: string;
}

/** undefined: not known yet (asking); null: nobody is logged in. */
let current: Me | null | undefined;
const listeners = new Set<() => void>();

function set(me: Me | null): void {
  current = me;
  for (const l of [...listeners]) l();
}

/** The session on load: GET /me (a 401 means the login page). */
export async function loadSession(): Promise<void> {
  setUnauthenticatedHandler(() => {
    setCsrfToken(undefined);
    set(null);
  });
  try {
    const me = await api.get<MeReply>('/me');
    setCsrfToken(me.csrfToken);
    set({ user: me.user, role: me.role });
  } catch {
    set(null);
  }
}

export async function login(user: string, password: string): Promise<void> {
  const r = await api.post<LoginReply>('/login', { user, password });
  setCsrfToken(r.csrfToken);
  set({ user: r.user, role: r.role });
}

export async function logout(): Promise<void> {
  try {
    await api.post('/logout');
  } finally {
    setCsrfToken(undefined);
    set(null);
  }
}

/** Whether the session is known yet (the shell shows nothing until it is). */
export function useSessionKnown(): boolean {
  const me = useMeOrUnknown();
  return me !== undefined;
}

function useMeOrUnknown(): Me | null | undefined {
  const [seen, setSeen] = useState(current);
  useEffect(() => {
    const l = (): void => setSeen(current);
    listeners.add(l);
    // The session may have changed between this render and the listener's start (GET /me answered first).
    l();
    return () => void listeners.delete(l);
  }, []);
  return seen;
}

/** The logged-in user and role, or null. */
export function useMe(): Me | null {
  return useMeOrUnknown() ?? null;
}

/** Operators and admins may run, stop, restore and manage sessions. */
export function canOperate(me: Me | null = current ?? null): boolean {
  return me?.role === 'operator' || me?.role === 'admin';
}

/** Admins may also create, change and delete jobs. */
export function canAdminister(me: Me | null = current ?? null): boolean {
  return me?.role === 'admin';
}
