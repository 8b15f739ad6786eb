/**
 * Console login and logout, and who the caller is. The session cookie is
 * HttpOnly (scripts in the page cannot read it), SameSite=Strict (other
 * sites' pages cannot send it) and Secure when the server speaks TLS; a
 * change made with it also needs the X-CSRF-Token login returned.
 */
import type { ApiServer } from './api.js';
import { clearedSessionCookie, sessionCookie } from '../../auth/index.js';
import { API_PREFIX, type ApiContext } from './context.js';
import { ERROR_RESPONSES, LoginBody, LoginReply, Me } from './schemas.js';

export function authRoutes(app: ApiServer, ctx: ApiContext): void {
  const { auth, clock } = ctx.deps;
  const secure = ctx.deps.https !== undefined;

  app.post(
    `${API_PREFIX}/login`,
    {
      config: { role: 'public' },
      schema: {
        summary: 'Log in to the console: sets the session cookie, returns the CSRF token',
        tags: ['auth'],
        body: LoginBody,
        response: { 200: LoginReply, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const r = await auth.login(request.body.user, request.body.password, request.ip);
      void reply.header('set-cookie', sessionCookie(r, { secure, now: clock.now() }));
      void reply.header('cache-control', 'no-store');
      return { user: r.user, role: r.role, csrfToken: r.csrfToken, expiresAt: r.expiresAt };
    },
  );

  app.post(
    `${API_PREFIX}/logout`,
    {
      // Anyone logged in may log out.
      config: { role: 'viewer' },
      schema: { summary: 'End the console session', tags: ['auth'], response: { 204: { type: 'null', description: 'logged out' }, ...ERROR_RESPONSES } },
    },
    async (request, reply) => {
      await auth.logout(request.headers.cookie);
      void reply.header('set-cookie', clearedSessionCookie({ secure }));
      return reply.code(204).send(null);
    },
  );

  app.get(
    `${API_PREFIX}/me`,
    {
      schema: {
        summary: 'Who is asking, with which role (and, for a console session, its CSRF token and end)',
        tags: ['auth'],
        response: { 200: Me, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const p = request.principal!;
      return { user: p.user, role: p.role, via: p.via, ...(p.session ? { csrfToken: p.session.csrfToken, expiresAt: p.session.expiresAt } : {}) };
    },
  );
}
