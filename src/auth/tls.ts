/**
 * The HTTPS certificate of `lifeboat serve`: given files (--tls-cert/--tls-key),
 * or a self-signed one made with the `openssl` command at the first start and
 * kept in the state folder (tls/cert.pem, tls/key.pem readable only by the
 * server's user), reused at every later start until it expires.
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../core/clock.js';
import { fromFsError, LifeboatError } from '../core/errors.js';

export interface TlsFiles {
  readonly certPath: string;
  readonly keyPath: string;
  /** PEM, as node:tls and fastify's `https` option take them. */
  readonly cert: Buffer;
  readonly key: Buffer;
  /** True when this call made the certificate. */
  readonly created: boolean;
  /** SHA-256 fingerprint (AA:BB:…), to print so a person can check what the browser shows. */
  readonly fingerprint256: string;
  readonly validTo: string;
}

/** A self-signed certificate lasts this long (browsers cap trusted ones at 398 days; a self-signed one is trusted by hand anyway). */
const VALID_DAYS = 825;

/** The names the self-signed certificate covers: localhost, the loopback addresses and this machine's name. */
export function certificateNames(host: string = hostname()): string[] {
  const names = ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1'];
  // A host name with anything beyond DNS letters would make openssl refuse the whole extension.
  if (host !== '' && host !== 'localhost' && /^[A-Za-z0-9.-]{1,253}$/.test(host)) names.push(`DNS:${host}`);
  return names;
}

function runOpenssl(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return reject(
          new LifeboatError(
            'LFB_ERR_TOOL_MISSING',
            'openssl is not installed: it makes the HTTPS certificate (apt install openssl), or pass --tls-cert and --tls-key',
          ),
        );
      reject(new LifeboatError('LFB_ERR_TOOL_FAILED', `openssl could not make a certificate: ${String(stderr).trim() || err.message}`, { cause: err }));
    });
  });
}

/** Reads a certificate and its key, checking that they belong together. */
export async function loadTlsFiles(certPath: string, keyPath: string): Promise<Omit<TlsFiles, 'created'>> {
  const cert = await readFile(certPath).catch((e: unknown) => Promise.reject(fromFsError(e, 'reading the TLS certificate', certPath)));
  const key = await readFile(keyPath).catch((e: unknown) => Promise.reject(fromFsError(e, 'reading the TLS key', keyPath)));
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${certPath} is not a PEM certificate: ${(err as Error).message}`, { cause: err });
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${keyPath} is not a PEM private key: ${(err as Error).message}`, { cause: err });
  }
  if (!matches) throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `${keyPath} is not the key of the certificate ${certPath}`);
  return { certPath, keyPath, cert, key, fingerprint256: x509.fingerprint256, validTo: new Date(x509.validTo).toISOString() };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw fromFsError(err, 'reading', path);
  }
}

/**
 * The state folder's certificate: made (self-signed, EC P-256) when there is none, when one of the two
 * files is missing, when they do not belong together (a start killed between the two renames) or when
 * it has expired; otherwise the one made before.
 */
export async function selfSignedCertificate(stateDir: string, opts: { clock: Clock; hostName?: string }): Promise<TlsFiles> {
  const dir = join(stateDir, 'tls');
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  if ((await exists(certPath)) && (await exists(keyPath))) {
    const loaded = await loadTlsFiles(certPath, keyPath).catch((err: unknown) => {
      if (err instanceof LifeboatError && err.code === 'LFB_ERR_INVALID_ARGUMENT') return undefined;
      throw err;
    });
    if (loaded && Date.parse(loaded.validTo) > opts.clock.now().getTime()) return { ...loaded, created: false };
  }
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
  } catch (err) {
    throw fromFsError(err, 'creating', dir);
  }
  // Made under temporary names and renamed: a start killed half-way leaves no half pair behind.
  const tmpCert = `${certPath}.tmp-${process.pid}`;
  const tmpKey = `${keyPath}.tmp-${process.pid}`;
  const host = opts.hostName ?? hostname();
  try {
    await runOpenssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-sha256',
      '-days',
      String(VALID_DAYS),
      '-subj',
      `/O=Lifeboat/CN=${/^[A-Za-z0-9.-]{1,64}$/.test(host) ? host : 'localhost'}`,
      '-addext',
      `subjectAltName=${certificateNames(host).join(',')}`,
      '-addext',
      'extendedKeyUsage=serverAuth',
      '-keyout',
      tmpKey,
      '-out',
      tmpCert,
    ]);
    await chmod(tmpKey, 0o600);
    await rename(tmpKey, keyPath);
    await rename(tmpCert, certPath);
  } catch (err) {
    await rm(tmpKey, { force: true });
    await rm(tmpCert, { force: true });
    throw err instanceof LifeboatError ? err : fromFsError(err, 'storing the TLS certificate in', dir);
  }
  return { ...(await loadTlsFiles(certPath, keyPath)), created: true };
}
