export * from './catalog.js';
export { openCatalog, type OpenCatalogOptions } from './open.js';
export { LATEST_SCHEMA_VERSION } from './migrations/index.js';
