/** Protocol fuzzing (tests and `npm run fuzz` only): every target, the loop, the mutators. */
import { datastoreTarget } from './datastore-target.js';
import { nbdTarget } from './nbd-target.js';
import { mountTarget, nfsTarget, portmapTarget, recordMarkingTarget, rpcCallTarget } from './rpc-targets.js';
import { rpcServerTarget } from './rpc-server-target.js';
import type { FuzzTarget } from './target.js';

export * from './harness.js';
export * from './mutate.js';
export * from './target.js';
export { datastoreTarget } from './datastore-target.js';
export { nbdTarget } from './nbd-target.js';
export { rpcServerTarget } from './rpc-server-target.js';
export { FUZZ_MAX_RECORD, mountTarget, nfsTarget, portmapTarget, recordMarkingTarget, rpcCallTarget } from './rpc-targets.js';

/** Every target that needs no listening port (NBD goes through a unix socket), in the order reports list them. */
export function portFreeTargets(): FuzzTarget[] {
  return [recordMarkingTarget(), rpcCallTarget(), nfsTarget(), datastoreTarget(), mountTarget(), portmapTarget(), nbdTarget()];
}

/** Every target: also the whole RPC server, which listens on a loopback port. */
export function allTargets(): FuzzTarget[] {
  return [...portFreeTargets(), rpcServerTarget()];
}
export { MOUNT_PROCEDURE_NAMES, NFS_PROCEDURE_NAMES, PMAP_PROCEDURE_NAMES } from './xdr-gen.js';
export { checkValidSession } from './nbd-replies.js';
