/**
 * Policies and operator policies (RabbitMQ's rabbit_policy): named patterns with a priority
 * and a definition of queue/exchange settings. The highest-priority matching policy applies;
 * an operator policy's numeric limits cap the user policy's and the queue's own arguments.
 */
export type ApplyTo = 'queues' | 'exchanges' | 'all' | 'classic_queues' | 'quorum_queues' | 'streams';

export interface Policy {
  vhost: string;
  name: string;
  pattern: string;
  applyTo: ApplyTo;
  priority: number;
  definition: Record<string, unknown>;
}

interface CompiledPolicy extends Policy {
  regex: RegExp;
}

export type PolicyKind = 'policy' | 'operator';

export class PolicyStore {
  private readonly policies = new Map<string, CompiledPolicy>();
  private readonly operatorPolicies = new Map<string, CompiledPolicy>();
  /** Called after any change so queues and exchanges re-read their effective settings. */
  onChange: (vhost: string) => void = () => {};

  set(kind: PolicyKind, p: Policy): void {
    const regex = new RegExp(p.pattern);
    this.map(kind).set(key(p.vhost, p.name), { ...p, regex });
    this.onChange(p.vhost);
  }

  delete(kind: PolicyKind, vhost: string, name: string): boolean {
    const removed = this.map(kind).delete(key(vhost, name));
    if (removed) this.onChange(vhost);
    return removed;
  }

  get(kind: PolicyKind, vhost: string, name: string): Policy | undefined {
    const p = this.map(kind).get(key(vhost, name));
    return p === undefined ? undefined : strip(p);
  }

  list(kind: PolicyKind, vhost?: string): Policy[] {
    const out: Policy[] = [];
    for (const p of this.map(kind).values()) if (vhost === undefined || p.vhost === vhost) out.push(strip(p));
    return out;
  }

  /** The policy in force for a queue or exchange, if any (highest priority wins). */
  effective(kind: PolicyKind, vhost: string, name: string, target: 'queue' | 'exchange'): Policy | undefined {
    let best: CompiledPolicy | undefined;
    for (const p of this.map(kind).values()) {
      if (p.vhost !== vhost || !appliesTo(p.applyTo, target) || !p.regex.test(name)) continue;
      if (best === undefined || p.priority > best.priority) best = p;
    }
    return best === undefined ? undefined : strip(best);
  }

  private map(kind: PolicyKind): Map<string, CompiledPolicy> {
    return kind === 'policy' ? this.policies : this.operatorPolicies;
  }
}

function appliesTo(applyTo: ApplyTo, target: 'queue' | 'exchange'): boolean {
  if (applyTo === 'all') return true;
  if (target === 'exchange') return applyTo === 'exchanges';
  return applyTo === 'queues' || applyTo === 'classic_queues';
}

function key(vhost: string, name: string): string {
  return `${vhost}\u0000${name}`;
}

function strip(p: CompiledPolicy): Policy {
  return { vhost: p.vhost, name: p.name, pattern: p.pattern, applyTo: p.applyTo, priority: p.priority, definition: p.definition };
}
