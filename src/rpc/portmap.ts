import type { Procedure, RpcProgram } from './rpc-server.js';
import type { XdrReader } from './xdr.js';

/** RFC 1833 §3: portmapper program 100000, version 2. */
export const PMAP_PROG = 100000;
export const PMAP_VERS = 2;
export const PMAP_PORT = 111;
export const PMAPPROC_NULL = 0;
export const PMAPPROC_SET = 1;
export const PMAPPROC_UNSET = 2;
export const PMAPPROC_GETPORT = 3;
export const PMAPPROC_DUMP = 4;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export interface Mapping {
  readonly prog: number;
  readonly vers: number;
  readonly prot: number;
  readonly port: number;
}

/** The table of registered programs. Registration is local (SET/UNSET only from loopback). */
export class PortmapRegistry {
  private readonly mappings: (Mapping & { owned: boolean })[] = [];

  /** `owned`: the serving process's own programs, which no remote UNSET may remove. */
  set(m: Mapping, opts: { owned?: boolean } = {}): boolean {
    if (this.mappings.some((x) => x.prog === m.prog && x.vers === m.vers && x.prot === m.prot)) return false;
    this.mappings.push({ ...m, owned: opts.owned === true });
    return true;
  }

  unset(prog: number, vers: number): boolean {
    const before = this.mappings.length;
    for (let i = this.mappings.length - 1; i >= 0; i--) {
      const m = this.mappings[i]!;
      if (m.prog === prog && m.vers === vers && !m.owned) this.mappings.splice(i, 1);
    }
    return this.mappings.length !== before;
  }

  /** The port of (prog, vers, prot), or 0 if not registered (RFC 1833). */
  getPort(prog: number, vers: number, prot: number): number {
    return this.mappings.find((m) => m.prog === prog && m.vers === vers && m.prot === prot)?.port ?? 0;
  }

  list(): readonly Mapping[] {
    return this.mappings;
  }
}

function readMapping(a: XdrReader): Mapping {
  const m = { prog: a.u32('prog'), vers: a.u32('vers'), prot: a.u32('prot'), port: a.u32('port') };
  a.end('mapping');
  return m;
}

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

/**
 * The portmapper as an RPC program. CALLIT (5) is not offered: it exists to
 * forward broadcast calls over UDP, which we do not serve, and it is a known
 * amplification vector; clients get PROC_UNAVAIL.
 */
export function portmapProgram(registry: PortmapRegistry): RpcProgram {
  const procs = new Map<number, Procedure>([
    [PMAPPROC_NULL, (a) => a.end()],
    [
      PMAPPROC_SET,
      (a, out, ctx) => {
        const m = readMapping(a);
        out.bool(LOOPBACK.test(ctx.remoteAddress) && registry.set(m));
      },
    ],
    [
      PMAPPROC_UNSET,
      (a, out, ctx) => {
        const m = readMapping(a);
        out.bool(LOOPBACK.test(ctx.remoteAddress) && registry.unset(m.prog, m.vers));
      },
    ],
    [
      PMAPPROC_GETPORT,
      (a, out) => {
        const m = readMapping(a);
        out.u32(registry.getPort(m.prog, m.vers, m.prot));
      },
    ],
    [
      PMAPPROC_DUMP,
      (a, out) => {
        a.end();
        // pmaplist: a linked list, each entry preceded by TRUE, ended by FALSE.
        for (const m of registry.list()) out.bool(true).u32(m.prog).u32(m.vers).u32(m.prot).u32(m.port);
        out.bool(false);
      },
    ],
  ]);
  return { prog: PMAP_PROG, name: 'portmapper', versions: new Map([[PMAP_VERS, procs]]) };
}
