import { MemoryStore } from '../../src/store/memory-store';
import { messageStoreContract } from './contract';

messageStoreContract('MemoryStore', () => ({
  open: () => new MemoryStore(),
  // Nothing survives a real restart in memory; the contract's "restart" keeps the process.
  restart: async (store) => store,
}));
