import type { AccessContext, UserStore } from '../auth/users';
import type { Config } from '../config';
import type { VHost } from '../core/vhost';
import type { Logger } from '../observability/logger';
import type { DirectReplyRegistry } from './direct-reply';
import type { MessageStore } from '../store/message-store';
import type { LimitStore } from '../core/limits';

/** What the AMQP layer needs from the broker; passed in, never global. */
export interface BrokerContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly users: UserStore;
  readonly vhosts: ReadonlyMap<string, VHost>;
  readonly version: string;
  readonly directReply: DirectReplyRegistry;
  /** Null when running in memory: persistent messages are then confirmed like transient ones. */
  readonly store: MessageStore | null;
  /** Vhost and user limits (max connections, queues, channels). */
  readonly limits?: LimitStore;
  /** Durable metadata changed by this turn's methods is saved before replies go out. */
  persistMetadata(): void;
}

/** Per-connection facts a channel needs. */
export interface SessionContext {
  readonly vhost: VHost;
  readonly access: AccessContext;
}
