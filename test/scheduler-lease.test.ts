// The scheduler's lease between servers sharing one catalog (here two connections to one SQLite file, real time,
// a 300 ms lease): one leads, the other stands by; a leader whose catalog fails stops leading once its lease would
// have expired, and the standby takes it over then, told whose it was; a leader that stops gives it up, and the
// next try of a standby takes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openCatalog } from '../src/catalog/open.js';
import type { Catalog, LeaseRecord } from '../src/catalog/catalog.js';
import type { Logger } from '../src/core/log.js';
import { SchedulerLease, SchedulerLeadership } from '../src/service/runtime/scheduler-lease.js';
import { tempDir } from './helpers.js';

const TTL_MS = 300;
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

interface Server {
  readonly leadership: SchedulerLeadership;
  readonly events: string[];
  readonly takenFrom: (LeaseRecord | undefined)[];
}

function server(catalog: Catalog, holder: string): Server {
  const events: string[] = [];
  const takenFrom: (LeaseRecord | undefined)[] = [];
  const leadership = new SchedulerLeadership(new SchedulerLease(catalog, 'scheduler t', holder, TTL_MS), () => Date.now(), quiet, {
    lead: async (from) => {
      events.push('lead');
      takenFrom.push(from);
    },
    lose: () => events.push('lose'),
    renewed: () => undefined,
  });
  return { leadership, events, takenFrom };
}

async function until(what: string, f: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('one of two servers leads; a leader cut from its catalog steps down, the standby takes over after expiry; a stop hands over at the next try', async () => {
  const { dir, cleanup } = await tempDir('lfb-lease-');
  const file = `sqlite:${join(dir, 'catalog.db')}`;
  const catalogs = [await openCatalog(file), await openCatalog(file), await openCatalog(file)];
  const started: Server[] = [];
  try {
    const a = server(catalogs[0]!, 'host-a');
    const b = server(catalogs[1]!, 'host-b');
    started.push(a, b);
    await a.leadership.start();
    await b.leadership.start();
    assert.equal(a.leadership.leading, true, 'the first to ask leads');
    assert.deepEqual(a.takenFrom, [undefined]);
    assert.equal(b.leadership.leading, false, 'the second stands by');
    // Renewals keep the lead well past the lease's first expiry.
    await new Promise((r) => setTimeout(r, 3 * TTL_MS));
    assert.deepEqual([a.events, b.events], [['lead'], []]);

    // The leader's catalog fails: it leads until a third of the lease before its expiry, not after.
    const cutAt = Date.now();
    await catalogs[0]!.close();
    await until('the leader to step down', () => a.events.includes('lose'));
    const steppedDown = Date.now() - cutAt;
    assert.ok(steppedDown <= TTL_MS - TTL_MS / 3 + 100, `stepped down ${steppedDown} ms after the cut`);
    assert.equal(a.leadership.leading, false);
    await until('the standby to lead', () => b.leadership.leading);
    assert.ok(Date.now() - cutAt > steppedDown, 'the standby leads after the leader stepped down, never while');
    assert.equal(b.takenFrom[0]?.holder, 'host-a', 'told whose lease it took');
    await a.leadership.stop();

    // The first server back (the same holder) stands by; the leader stops and gives the lease up.
    const a2 = server(catalogs[2]!, 'host-a');
    started.push(a2);
    await a2.leadership.start();
    assert.equal(a2.leadership.leading, false);
    await b.leadership.stop();
    const given = await catalogs[1]!.getLease('scheduler t');
    assert.equal(given?.expiresAt, given?.renewedAt, 'given up: expired when last renewed');
    const stoppedAt = Date.now();
    await until('the lease to pass on a stop', () => a2.leadership.leading);
    assert.ok(Date.now() - stoppedAt <= TTL_MS / 3 + 200, `led ${Date.now() - stoppedAt} ms after the stop`);
    assert.equal(a2.takenFrom[0]?.holder, 'host-b', 'taken from the one that gave it up, with the time it last acted');
  } finally {
    for (const s of started) await s.leadership.stop();
    for (const c of catalogs) await c.close();
    await cleanup();
  }
});
