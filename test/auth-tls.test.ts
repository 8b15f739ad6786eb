import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fixedClock } from '../src/core/clock.js';
import { isLifeboatError } from '../src/core/errors.js';
import { certificateNames, loadTlsFiles, selfSignedCertificate } from '../src/auth/index.js';
import { tempDir } from './helpers.js';

const NOW = fixedClock(new Date('2026-03-01T10:00:00Z'));

test('the self-signed certificate is made once in the state folder (key 0600, names for localhost, loopback and the host) and reused', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const made = await selfSignedCertificate(dir, { clock: NOW, hostName: 'backup-01.example.net' });
    assert.equal(made.created, true);
    assert.equal(made.certPath, join(dir, 'tls', 'cert.pem'));
    assert.equal(made.keyPath, join(dir, 'tls', 'key.pem'));
    assert.equal((await stat(made.keyPath)).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'tls'))).mode & 0o777, 0o700);
    const x509 = new X509Certificate(made.cert);
    assert.equal(x509.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:backup-01.example.net');
    assert.equal(x509.fingerprint256, made.fingerprint256);
    assert.ok(x509.checkIssued(x509), 'self-signed');

    const again = await selfSignedCertificate(dir, { clock: NOW, hostName: 'backup-01.example.net' });
    assert.equal(again.created, false);
    assert.equal(again.fingerprint256, made.fingerprint256);

    // An expired one is replaced.
    const later = await selfSignedCertificate(dir, { clock: fixedClock(new Date(Date.parse(made.validTo) + 1000)) });
    assert.equal(later.created, true);
    assert.notEqual(later.fingerprint256, made.fingerprint256);
  } finally {
    await cleanup();
  }
});

test("a pair that does not belong together is refused when given, and replaced when it is the state folder's own", async () => {
  const a = await tempDir();
  const b = await tempDir();
  try {
    const first = await selfSignedCertificate(a.dir, { clock: NOW });
    const second = await selfSignedCertificate(b.dir, { clock: NOW });
    await assert.rejects(loadTlsFiles(first.certPath, second.keyPath), (err: unknown) => isLifeboatError(err, 'LFB_ERR_INVALID_ARGUMENT'));
    await assert.rejects(loadTlsFiles(first.certPath, join(a.dir, 'missing.pem')), (err: unknown) => isLifeboatError(err, 'LFB_ERR_IO'));
    await writeFile(join(a.dir, 'garbage.pem'), 'not a certificate');
    await assert.rejects(loadTlsFiles(join(a.dir, 'garbage.pem'), first.keyPath), (err: unknown) => isLifeboatError(err, 'LFB_ERR_INVALID_ARGUMENT'));
    assert.equal((await loadTlsFiles(first.certPath, first.keyPath)).fingerprint256, first.fingerprint256);

    // A start killed between the two renames leaves a new key beside the old certificate: made again.
    await writeFile(first.keyPath, await readFile(second.keyPath));
    const remade = await selfSignedCertificate(a.dir, { clock: NOW });
    assert.equal(remade.created, true);
    assert.equal((await loadTlsFiles(remade.certPath, remade.keyPath)).fingerprint256, remade.fingerprint256);
  } finally {
    await a.cleanup();
    await b.cleanup();
  }
});

test('a host name openssl would refuse is left out of the certificate names', () => {
  assert.deepEqual(certificateNames('localhost'), ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1']);
  assert.deepEqual(certificateNames('bad,name=x'), ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1']);
  assert.deepEqual(certificateNames('vmhost'), ['DNS:localhost', 'IP:127.0.0.1', 'IP:::1', 'DNS:vmhost']);
});
