export * from './backup-file.js';
export * from './backup-file-writer.js';
export * from './commit.js';
export * from './checked-json.js';
export * from './repository.js';
export * from './job.js';
export * from './job-state.js';
export * from './restore-point-disk.js';
