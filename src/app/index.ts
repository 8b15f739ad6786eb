export * from './service.js';
export * from './serve.js';
export * from './control-api.js';
export * from './control-runs.js';
export * from './control-lab-reports.js';
export * from './control-files.js';
export * from './allow-list.js';
export type { CacheStats, SessionInfo } from '../recovery/index.js';
export type { CopyJobDefinition } from '../methods/copy-job.js';
