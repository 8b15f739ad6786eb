export * from './block-device.js';
export * from './cow-overlay.js';
export * from './zero-disk.js';
