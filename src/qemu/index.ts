export * from './qmp.js';
export * from './command-line.js';
export * from './qemu-vm.js';
export * from './hotplug.js';
