// Passwords, API tokens, console sessions, roles, login rate limits and the HTTPS certificate.
export {
  DEFAULT_SCRYPT,
  MIN_PASSWORD_LENGTH,
  MAX_PASSWORD_LENGTH,
  checkNewPassword,
  hashPassword,
  hashQueue,
  parsePasswordHash,
  verifyPassword,
  type ScryptParams,
} from './passwords.js';
export {
  DEFAULT_SESSION_TTL_MS,
  MAX_TOKEN_NAME_LENGTH,
  TOKEN_PREFIX,
  constantTimeEqual,
  isWellFormedCookieValue,
  makeApiToken,
  makeWebSession,
  parseApiToken,
  sha256Hex,
  tokenMatches,
  type NewApiToken,
  type NewWebSession,
  type ParsedToken,
} from './tokens.js';
export { DEFAULT_RATE_LIMITS, LoginRateLimiter, addressKey, loginKeys, type RateLimitOptions } from './rate-limit.js';
export { PERMISSIONS, canChange, isUserRole, requirePermission, roleAllows, type Permission } from './permissions.js';
export {
  addUser,
  changeUser,
  checkRole,
  type AccountCatalog,
  checkUserName,
  createToken,
  deleteUser,
  isValidUserName,
  requireUser,
  revokeToken,
} from './accounts.js';
export {
  Authenticator,
  CSRF_HEADER,
  SESSION_COOKIE,
  clearedSessionCookie,
  cookieValue,
  sessionCookie,
  type AuthCatalog,
  type AuthenticatorOptions,
  type HeaderValue,
  type LoginResult,
  type Principal,
  type AuthHeaders,
} from './authenticator.js';
export { certificateNames, loadTlsFiles, selfSignedCertificate, type TlsFiles } from './tls.js';
