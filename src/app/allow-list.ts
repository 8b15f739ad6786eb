import { LifeboatError } from '../core/errors.js';

/** IPv4 CIDR list (and ::1): who may talk to the NFS, MOUNT and NBD servers. */
export class AllowList {
  private constructor(
    private readonly nets: readonly { base: number; mask: number }[],
    private readonly ipv6Loopback: boolean,
  ) {}

  static readonly LOOPBACK = '127.0.0.0/8,::1';

  static parse(text: string): AllowList {
    const nets: { base: number; mask: number }[] = [];
    let v6 = false;
    for (const part of text
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== '')) {
      if (part === '::1' || part === '::1/128') {
        v6 = true;
        continue;
      }
      const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/.exec(part);
      const octets = m ? m.slice(1, 5).map(Number) : [];
      const bits = m?.[5] === undefined ? 32 : Number(m[5]);
      if (!m || octets.some((o) => o > 255) || bits > 32)
        throw new LifeboatError('LFB_ERR_INVALID_ARGUMENT', `--allow: "${part}" is not an IPv4 address or CIDR (e.g. 10.0.0.0/24)`);
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      const base = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
      nets.push({ base: (base & mask) >>> 0, mask });
    }
    return new AllowList(nets, v6);
  }

  allows(address: string): boolean {
    const a = address.startsWith('::ffff:') ? address.slice(7) : address;
    if (a === '::1') return this.ipv6Loopback;
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
    if (!m) return false;
    const ip = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
    return this.nets.some((n) => (ip & n.mask) >>> 0 === n.base);
  }
}
