export * from './xdr.js';
export * from './record-marking.js';
export * from './rpc-message.js';
export * from './rpc-server.js';
export * from './portmap.js';
export * from './portmap-client.js';
