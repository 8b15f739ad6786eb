export * from './file-system.js';
export * from './nfs-errors.js';
export * from './wire.js';
export * from './nfs-program.js';
export * from './mount-program.js';
