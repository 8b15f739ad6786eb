export * from './catalog.js';
export { openCatalog, type OpenCatalogOptions } from './open.js';
