/**
 * The daemon's unix-socket protocol: one JSON request line, one JSON answer line, then the
 * connection closes. Only node builtins here: the thin client in wal-push/wal-fetch loads this
 * and nothing of storage, codec or cloud SDKs.
 */
import { createHash } from 'node:crypto';

export type Request =
  | { op: 'push'; path: string; fingerprint: string; /** the client's destinationTag, for markers */ tag?: string }
  | { op: 'fetch'; name: string; dest: string; fingerprint: string }
  | { op: 'status' };

export type Answer =
  | { ok: true; result?: string; status?: DaemonStatus }
  | { ok: false; notFound?: boolean; exitCode?: number; message: string; fallback?: boolean };

export interface DaemonStatus {
  pid: number;
  version: string;
  startedAt: string;
  socket: string;
  metrics?: string | undefined;
  storage: string;
  pgdata?: string | undefined;
  pushed: number;
  pushedBytes: number;
  fetched: number;
  fetchedBytes: number;
  failures: number;
  inFlight: number;
  queued: number;
  lastPushAt?: string | undefined;
  lastFetchAt?: string | undefined;
}

/** The settings that decide what a push or fetch does; client and daemon must agree on them. */
export const fingerprintKeys = [
  'storage',
  'compression',
  'compressionLevel',
  'recipients',
  'recipientsFile',
  'identityFile',
  'passphraseFile',
  'passphraseWorkFactor',
  'allowUnencrypted',
] as const;

/** A digest of those settings (no secrets are in them; paths only), so a daemon never serves a client configured for another repository. */
export function configFingerprint(config: Partial<Record<(typeof fingerprintKeys)[number], unknown>>): string {
  const picked = fingerprintKeys.map((k) => [k, config[k] ?? null]);
  return createHash('sha256').update(JSON.stringify(picked)).digest('hex').slice(0, 32);
}
