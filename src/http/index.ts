// The management plugin's entry point for the composition root (src/broker.ts).
export { startManagement } from './server';
export type { ManagementHandle, ManagementOptions } from './server';
export type { ManagedBroker } from './context';
