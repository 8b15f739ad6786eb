export * from './paths.js';
export * from './browse.js';
export * from './operations.js';
export * from './extract.js';
export type { GuestStat } from './guest-fs.js';
export * from './session.js';
export * from './records.js';
export * from './point-export.js';
export { endProcess, isMountPoint, unmountFuse } from './guestfish.js';
