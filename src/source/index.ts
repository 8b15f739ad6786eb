export * from './raw-disk-source.js';
