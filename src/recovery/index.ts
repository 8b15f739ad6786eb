export * from './instant-recovery.js';
export * from './datastore-fs.js';
export * from './session-store.js';
export * from './vmware-files.js';
