import { readFileSync } from 'node:fs';
import type { TlsOptions } from 'node:tls';

/** The TLS settings of Config (tlsCertFile, tlsKeyFile, tlsCaFile). */
export interface TlsFiles {
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  tlsCaFile: string | null;
}

/**
 * Server options for AMQPS and HTTPS from PEM files. With a CA bundle, clients must present a
 * certificate signed by it, as RabbitMQ's verify_peer + fail_if_no_peer_cert; without one,
 * client certificates are not asked for. Throws with the setting's name when a file is
 * missing or unreadable, so the executable can say which.
 */
export function tlsServerOptions(files: TlsFiles): TlsOptions {
  if (files.tlsCertFile === null || files.tlsKeyFile === null) {
    throw new Error('TLS needs both tlsCertFile (--tls-cert) and tlsKeyFile (--tls-key)');
  }
  const options: TlsOptions = {
    cert: read(files.tlsCertFile, 'tlsCertFile'),
    key: read(files.tlsKeyFile, 'tlsKeyFile'),
    minVersion: 'TLSv1.2',
  };
  if (files.tlsCaFile !== null) {
    options.ca = read(files.tlsCaFile, 'tlsCaFile');
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  return options;
}

function read(path: string, setting: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${setting} ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
