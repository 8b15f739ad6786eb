// Which folder of src/ may import which (docs/design.md §Layers). Like kopia's
// layering test: a change that makes a protocol or the format reach into the
// wrong layer fails `npm run lint`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';

const ALLOWED = {
  core: [],
  format: ['core'],
  storage: ['core'],
  // The object-store seam (S3 and a local folder): whole immutable objects, create-only commits. Below the repository.
  objects: ['core', 'storage'],
  // Encryption at rest: key files' crypto, sealing, keyed digests, the in-memory keyring. Below everything that reads blocks.
  crypto: ['core'],
  compress: ['core', 'format', 'crypto'],
  // Sources: raw files and devices, NBD exports (images through a private qemu-nbd), running VMs over QMP.
  source: ['core', 'nbd', 'qemu'],
  // A repository's files are on a local file system or, through the storage seam on objects, on S3.
  repository: ['core', 'format', 'storage', 'objects', 'compress', 'crypto'],
  retention: [],
  // ONC RPC, XDR and the portmapper: protocol code, no repository.
  rpc: ['core'],
  // Virtual disks and the copy-on-write overlay: no repository, no protocol.
  blockdev: ['core', 'format', 'storage'],
  // NFSv3 and MOUNT over the NfsFileSystem interface: never the repository.
  nfs: ['core', 'rpc'],
  // Instant recovery: the only place restore points, overlays and the datastore meet.
  // NBD over NbdExports: never the repository.
  nbd: ['core'],
  // QEMU: QMP, command lines, supervised VM processes. Knows VM configurations, not the repository.
  qemu: ['core', 'format'],
  recovery: ['core', 'format', 'storage', 'compress', 'crypto', 'repository', 'blockdev', 'nfs', 'nbd', 'qemu'],
  // The virtual lab (SureBackup, sandboxes): network namespaces, taps, dnsmasq, tests of lab VMs.
  // VMs come through the LabSessions seam (instant sessions of the server), never from the repository.
  lab: ['core', 'qemu'],
  // File-level recovery: a libguestfs appliance reads a point's disks over NBD; guest file systems are never parsed here.
  files: ['core', 'nbd', 'repository'],
  methods: ['core', 'format', 'storage', 'compress', 'crypto', 'repository', 'retention', 'source'],
  restore: ['core', 'repository'],
  app: [
    'core',
    'format',
    'storage',
    'compress',
    'crypto',
    'repository',
    'retention',
    'methods',
    'restore',
    'source',
    'rpc',
    'nfs',
    'nbd',
    'qemu',
    'recovery',
    'lab',
    // Types of file-level recovery for the control API (the server's file sessions are the service's).
    'files',
  ],
  // The catalog of runs, jobs, points, users and tokens: one interface, SQLite and PostgreSQL behind it.
  catalog: ['core'],
  // The scheduler's decisions (pure): next fire times, windows, retries, chaining, the task cap.
  schedule: ['core'],
  // Passwords, API tokens, console sessions, login rate limits.
  auth: ['core', 'catalog'],
  // The service: the scheduler's runtime, runs recorded in the catalog, the HTTP API.
  service: [
    'core',
    'format',
    'storage',
    'compress',
    'repository',
    'retention',
    'methods',
    'restore',
    'app',
    'catalog',
    'schedule',
    'auth',
    'recovery',
    'files',
  ],
  cli: ['core', 'crypto', 'app', 'compress', 'repository', 'restore', 'catalog', 'schedule', 'auth', 'service', 'lab', 'files'],
  // Test and benchmark support: may use any layer below app; no production folder may import it.
  testing: [
    'core',
    'crypto',
    'format',
    'storage',
    'objects',
    'compress',
    'source',
    'repository',
    'retention',
    'methods',
    'restore',
    'rpc',
    'blockdev',
    'nfs',
    'nbd',
    'qemu',
    'recovery',
    'catalog',
  ],
};
// Pure layers: no I/O of their own.
const NO_IO = {
  format: ['node:fs', 'node:fs/promises', 'node:net', 'node:child_process'],
  retention: ['node:fs', 'node:fs/promises', 'node:net', 'node:child_process'],
  schedule: ['node:fs', 'node:fs/promises', 'node:net', 'node:child_process'],
};

const root = resolve(dirname(new URL(import.meta.url).pathname), '..', 'src');
const web = resolve(root, '..', 'web');
const problems = [];
function walk(dir) {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) check(p);
  }
}
function check(file) {
  const from = relative(root, file).split('/')[0];
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(/(?:import|export)[^'"]*from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)) {
    const spec = m[1] ?? m[2];
    if (NO_IO[from]?.includes(spec)) problems.push(`${relative(root, file)}: ${from}/ must not import ${spec}`);
    if (!spec.startsWith('.')) continue;
    const target = relative(root, resolve(dirname(file), spec)).split('/')[0];
    // The web console (web/) is browser code that talks to the server only through the HTTP API.
    if (!relative(web, resolve(dirname(file), spec)).startsWith('..')) problems.push(`${relative(root, file)}: src/ must not import web/ (${spec})`);
    if (target === from || target.startsWith('..')) continue;
    if (!(from in ALLOWED)) problems.push(`${relative(root, file)}: folder ${from}/ has no layer rule in scripts/check-layers.mjs`);
    else if (!ALLOWED[from].includes(target)) problems.push(`${relative(root, file)}: ${from}/ may not import ${target}/ (${spec})`);
  }
}
walk(root);
// And the console imports nothing of the server: npm packages and its own files only.
function walkWeb(dir) {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walkWeb(p);
    else if (/\.tsx?$/.test(p))
      for (const m of readFileSync(p, 'utf8').matchAll(/(?:import|export)[^'"]*from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)) {
        const spec = m[1] ?? m[2];
        if (spec.startsWith('.') && relative(web, resolve(dirname(p), spec)).startsWith('..'))
          problems.push(`${relative(dirname(web), p)}: web/ may import only its own files and npm packages (${spec})`);
      }
  }
}
walkWeb(web);
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`layers: ok (${Object.keys(ALLOWED).length} folders)`);
