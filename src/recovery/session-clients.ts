import type { Clock } from '../core/clock.js';
import { LifeboatError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { KIND_DISK, parseHandle } from './datastore-handles.js';

/** A client using a session's disks, as `instant migrate --finish` lists it. */
export interface SessionClient {
  readonly protocol: 'nbd' | 'nfs';
  /** NBD: address:port of the connection; NFS: the client's address. */
  readonly client: string;
  readonly disk: string;
  /** NBD: when the connection chose the export; NFS: the client's last call on the disk. */
  readonly since: string;
}

/** What the NBD server tells of its connections (src/nbd's NbdServer). */
export interface NbdConnections {
  clients(): readonly { readonly export: string; readonly client: string; readonly since: Date }[];
  disconnect(match: (exportName: string) => boolean): Promise<number>;
}

/**
 * NFSv3 has no open or close: a client that called on a disk within this
 * long counts as attached. A running guest's hypervisor touches its disk far
 * more often than this; a stopped one has let go.
 */
export const NFS_ATTACHED_MS = 60_000;
/** Clients remembered per session: a hostile peer cycling addresses cannot grow this. */
const MAX_NFS_CLIENTS = 64;

/**
 * Who is using each session's disks: NBD connections (from the server) and
 * NFS clients (from the calls they make on the disks' handles). A final
 * migration copy must not run under a writer.
 */
export class SessionClients {
  private nbd: NbdConnections | undefined;
  /** Session key (handle bytes 2–17, hex) → session name and disk names by index. */
  private readonly sessions = new Map<string, { name: string; disks: Map<number, string> }>();
  /** Session name → NFS client address → disk and last call (ms). */
  private readonly nfs = new Map<string, Map<string, { disk: string; lastMs: number }>>();

  constructor(private readonly clock: Clock) {}

  setNbd(server: NbdConnections): void {
    this.nbd = server;
  }

  /** The session's id is in its handles; its disks' handles carry their position in the session. */
  track(sessionId: string, name: string, diskNames: readonly string[]): void {
    this.sessions.set(sessionId.replace(/-/g, ''), { name, disks: new Map(diskNames.map((d, i) => [i, d])) });
  }

  forget(sessionId: string): void {
    const s = this.sessions.get(sessionId.replace(/-/g, ''));
    this.sessions.delete(sessionId.replace(/-/g, ''));
    if (s) this.nfs.delete(s.name);
  }

  /** Called for every NFS call (cheap: a handle parse and two map lookups). */
  noteNfsCall(handle: Buffer, address: string): void {
    let h: ReturnType<typeof parseHandle>;
    try {
      h = parseHandle(handle);
    } catch {
      return;
    }
    if (h.kind !== KIND_DISK) return;
    const s = this.sessions.get(h.sessionKey);
    const disk = s?.disks.get(Number(h.id));
    if (!s || disk === undefined) return;
    let seen = this.nfs.get(s.name);
    if (!seen) this.nfs.set(s.name, (seen = new Map()));
    seen.delete(address);
    seen.set(address, { disk, lastMs: this.clock.now().getTime() });
    if (seen.size > MAX_NFS_CLIENTS) seen.delete(seen.keys().next().value!);
  }

  /** Every client of session `name` now. */
  list(name: string): SessionClient[] {
    const out: SessionClient[] = [];
    for (const c of this.nbd?.clients() ?? []) {
      if (c.export.startsWith(`${name}/`)) out.push({ protocol: 'nbd', client: c.client, disk: c.export.slice(name.length + 1), since: c.since.toISOString() });
    }
    const now = this.clock.now().getTime();
    for (const [address, c] of this.nfs.get(name) ?? []) {
      if (now - c.lastMs < NFS_ATTACHED_MS) out.push({ protocol: 'nfs', client: address, disk: c.disk, since: new Date(c.lastMs).toISOString() });
    }
    return out;
  }

  /**
   * LFB_ERR_CLIENTS_ATTACHED while NFS or NBD clients use the session, unless
   * forced (then logged). A client that has just closed its NBD connection
   * may not be gone from the server's view yet: that gets a moment.
   */
  async refuseAttached(name: string, force: boolean, logger: Logger): Promise<void> {
    let clients = this.list(name);
    for (let i = 0; i < 20 && !force && clients.some((c) => c.protocol === 'nbd'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      clients = this.list(name);
    }
    if (clients.length === 0) return;
    if (force) {
      logger.warn('instant recovery: finishing a migration with clients attached (--force)', { session: name, clients: describeClients(clients) });
      return;
    }
    throw new LifeboatError(
      'LFB_ERR_CLIENTS_ATTACHED',
      `session ${name} is in use: ${describeClients(clients)}; shut the VM down or detach them (an NFS client counts until a minute after its last call), ` +
        'or add --force to close their connections and refuse their writes',
      { details: { clients } },
    );
  }

  /** Closes the session's NBD connections (NFS has none to close: its writes are refused by the sealed overlays). */
  async detachNbd(name: string): Promise<number> {
    return (await this.nbd?.disconnect((e) => e.startsWith(`${name}/`))) ?? 0;
  }
}

export function describeClients(clients: readonly SessionClient[]): string {
  return clients.map((c) => `${c.protocol.toUpperCase()} ${c.client} on ${c.disk} (${c.protocol === 'nbd' ? 'connected' : 'last call'} ${c.since})`).join(', ');
}
