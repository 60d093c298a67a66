import { Config, defaultConfig } from './config';

export interface BrokerHandle {
  readonly host: string;
  readonly port: number;
  /** amqp://guest:guest@host:port */
  readonly url: string;
  close(): Promise<void>;
}

/** Starts a broker; options default to an in-memory broker (dataDir null). */
export async function startBroker(options: Partial<Config> = {}): Promise<BrokerHandle> {
  const config: Config = { ...defaultConfig(), ...options };
  void config;
  throw new Error('not yet implemented');
}
