// Public entry point for embedding Warren, e.g. in an application's own test suite.
export { startBroker } from './broker';
export type { BrokerHandle } from './broker';
export type { Config } from './config';
