/**
 * What each role may do. Three levels, each role holding the ones before it:
 *   read       every GET: repositories, jobs, runs, points, plans, sessions, logs (viewer, operator, admin)
 *   operate    run and stop jobs, verify, restore, instant sessions: start, stop, add a disk, migrate (operator, admin)
 *   administer create, change and delete jobs and repositories; users and other users' tokens (admin)
 */
import { USER_ROLES, type UserRole } from '../catalog/catalog.js';
import { LifeboatError } from '../core/errors.js';

export const PERMISSIONS = ['read', 'operate', 'administer', 'move'] as const;
export type Permission = (typeof PERMISSIONS)[number];

const ROLE_PERMISSIONS: Readonly<Record<UserRole, readonly Permission[]>> = {
  viewer: ['read'],
  operator: ['read', 'operate', 'move'],
  admin: ['read', 'operate', 'administer', 'move'],
  // A data mover's host: its own poll, progress and results, nothing else (it reads no job, point or run).
  mover: ['move'],
};

export function isUserRole(text: string): text is UserRole {
  return (USER_ROLES as readonly string[]).includes(text);
}

/** A role the catalog does not know (a damaged row) may do nothing. */
export function roleAllows(role: string, permission: Permission): boolean {
  return isUserRole(role) && ROLE_PERMISSIONS[role].includes(permission);
}

/** Whether the role may change anything at all (viewers may not). */
export function canChange(role: string): boolean {
  return roleAllows(role, 'operate');
}

/** What each permission lets a caller do, and who has it, for the message of a refusal. */
const WHAT: Record<Permission, string> = {
  read: 'read anything',
  operate: 'change anything',
  administer: 'administer the server',
  move: 'act as a data mover',
};
const WHO: Record<Permission, string> = {
  read: 'viewer, operator or admin',
  operate: 'operator or admin',
  administer: 'admin',
  move: 'mover, operator or admin',
};

/** LFB_ERR_FORBIDDEN unless the role has the permission. */
export function requirePermission(who: { readonly user: string; readonly role: string }, permission: Permission): void {
  if (!roleAllows(who.role, permission))
    throw new LifeboatError('LFB_ERR_FORBIDDEN', `user ${who.user} (${who.role}) may not ${WHAT[permission]}: this needs the ${WHO[permission]} role`, {
      details: { user: who.user, role: who.role, needs: permission },
    });
}
