import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { QemuVm, kvmUsable } from '../qemu/index.js';
import { filesForPoint, scanJob, type Repository } from '../repository/index.js';
import type { BootOptions, Open } from './session-types.js';

/** Boots the session's VM in QEMU from its NBD exports: the stored configuration, no network unless asked. */
export async function bootSession(repo: Repository, o: Open, b: BootOptions, nbd: { host: string; port: number }, logger: Logger, clock: Clock): Promise<void> {
  const state = await scanJob(repo.jobDir(o.rec.job), repo.storage);
  const files = filesForPoint(state, o.rec.pointId)!;
  const vm = files[files.length - 1]!.root.meta.vm;
  const accel = b.accel ?? (kvmUsable() ? 'kvm' : 'tcg');
  o.vm = await QemuVm.launch(
    {
      vm,
      disks: o.rec.disks.map((d) => ({
        name: d.name,
        bus: vm.disks[d.index]?.bus ?? 'virtio',
        host: nbd.host,
        port: nbd.port,
        exportName: `${o.rec.name}/${d.name}`,
      })),
      accel,
      network: b.network ?? 'none',
      dir: o.rec.dir,
    },
    logger,
    clock,
  );
}
