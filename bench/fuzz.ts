/**
 * `npm run fuzz [-- --seed N --iterations N --targets a,b --valid-share 0.1 --no-minimize]`:
 * generated and mutated inputs for record marking, RPC call decoding, every
 * NFS/MOUNT/portmapper procedure and the NBD handshake and commands, in this
 * process (heap capped by --max-old-space-size). Prints inputs per target,
 * inputs/s, heap figures and every finding with its shrunk input as hex;
 * exits 1 when there is a finding.
 */
import { parseArgs } from 'node:util';
import { allTargets, runFuzz, type FuzzReport } from '../src/testing/fuzz/index.js';

const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    iterations: { type: 'string', default: '1000000' },
    targets: { type: 'string' },
    'valid-share': { type: 'string', default: '0.1' },
    'no-minimize': { type: 'boolean', default: false },
  },
});
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
const iterations = Number(values.iterations);
if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(iterations) || iterations < 1) throw new Error('--seed and --iterations take whole numbers');
const wanted = values.targets?.split(',');
const targets = allTargets().filter((t) => wanted === undefined || wanted.includes(t.name));
if (targets.length === 0) throw new Error(`no target among ${allTargets().map((t) => t.name)}`);

console.log(`fuzz: seed ${seed}, ${iterations} inputs, targets ${targets.map((t) => t.name).join(', ')}`);
const validShare = Number(values['valid-share']);
const report = await runFuzz({ seed, iterations, targets, validShare, minimize: !values['no-minimize'], progress: (line) => console.log(`  ${line}`) });
print(report);
process.exitCode = report.findings.length > 0 ? 1 : 0;

function print(r: FuzzReport): void {
  console.log('\ntarget            inputs    valid  accepted  rejected  failed');
  for (const [name, s] of Object.entries(r.targets)) {
    const cols = [s.inputs, s.valid, s.accepted, s.rejected, s.failed].map((n, i) => String(n).padStart(i === 0 ? 8 : 9));
    console.log(`${name.padEnd(16)}${cols.join('')}`);
    const labels = Object.entries(s.labels).sort(([a], [b]) => (a < b ? -1 : 1));
    if (labels.length > 1) console.log(`    ${labels.map(([l, n]) => `${l} ${n}`).join(', ')}`);
  }
  const held = r.retainedSamples;
  console.log(`\n${r.iterations} inputs in ${r.seconds.toFixed(1)} s: ${Math.round(r.inputsPerSecond)} inputs/s`);
  console.log(`peak heap in use ${(r.peakHeapBytes / MiB).toFixed(1)} MiB; peak RSS ${(r.peakRssBytes / MiB).toFixed(1)} MiB`);
  if (held.length > 0) {
    const fmt = (n: number): string => (n / MiB).toFixed(1);
    console.log(
      `held after full GC: first ${fmt(held[0]!)} MiB, min ${fmt(Math.min(...held))}, max ${fmt(Math.max(...held))}, last ${fmt(held[held.length - 1]!)} MiB`,
    );
  }
  console.log(`\n${r.findings.length} finding(s)`);
  for (const f of r.findings) {
    console.log(
      `\n[${f.kind}] ${f.target} at ${f.where} (${f.occurrences}x, first at input ${f.iteration}, ${f.reproduced ? 'reproduces alone' : 'did not reproduce alone'})`,
    );
    console.log(`  ${f.message}`);
    const hex = f.input.toString('hex');
    console.log(`  input (${f.input.length} bytes${f.valid ? ', unmutated' : ''}): ${hex.length > 4096 ? `${hex.slice(0, 4096)}…` : hex}`);
  }
}
