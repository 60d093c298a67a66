import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * RabbitMQ's password hashing modules. A stored hash is base64(salt(4) ++ H(salt ++ password)),
 * whatever the algorithm, so hashes in a RabbitMQ definitions file keep working here.
 */
export type HashingAlgorithm = 'rabbit_password_hashing_sha256' | 'rabbit_password_hashing_sha512' | 'rabbit_password_hashing_md5';

export const DEFAULT_HASHING: HashingAlgorithm = 'rabbit_password_hashing_sha256';

const DIGESTS: Record<HashingAlgorithm, { name: string; size: number }> = {
  rabbit_password_hashing_sha256: { name: 'sha256', size: 32 },
  rabbit_password_hashing_sha512: { name: 'sha512', size: 64 },
  rabbit_password_hashing_md5: { name: 'md5', size: 16 },
};

export function isHashingAlgorithm(name: string): name is HashingAlgorithm {
  return Object.prototype.hasOwnProperty.call(DIGESTS, name);
}

/** Hashes a password the way RabbitMQ stores it, so definitions files move between the two. */
export function hashPassword(password: string, salt: Buffer = randomBytes(4), algorithm: HashingAlgorithm = DEFAULT_HASHING): string {
  const digest = createHash(DIGESTS[algorithm].name).update(salt).update(password, 'utf8').digest();
  return Buffer.concat([salt, digest]).toString('base64');
}

/** True when `password` matches the stored hash. An empty hash (a user without a password) never matches. */
export function verifyPassword(passwordHash: string, algorithm: HashingAlgorithm, password: string): boolean {
  const stored = Buffer.from(passwordHash, 'base64');
  if (stored.length !== 4 + DIGESTS[algorithm].size) return false;
  const candidate = Buffer.from(hashPassword(password, stored.subarray(0, 4), algorithm), 'base64');
  return timingSafeEqual(stored, candidate);
}

/** A well-formed stored hash for the algorithm ('' is allowed: a user who cannot log in with a password). */
export function isValidHash(passwordHash: string, algorithm: HashingAlgorithm): boolean {
  if (passwordHash === '') return true;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(passwordHash)) return false;
  return Buffer.from(passwordHash, 'base64').length === 4 + DIGESTS[algorithm].size;
}
