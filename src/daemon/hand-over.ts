/**
 * wal-push / wal-fetch side of the daemon: send the request and turn the answer into what the
 * command does next. `true`: the daemon did it; `false`: do it here (no daemon, a dead one, one
 * configured for another repository, or one shutting down). Daemon-side failures come back as the
 * same WalshipError (and exit code) the command would have raised itself.
 */
import { ExitCode, WalshipError, type ExitCodeValue } from '../errors.ts';
import { log } from '../log.ts';
import { askDaemon } from './client.ts';
import { configFingerprint, type Answer } from './protocol.ts';
import type { Config } from '../config/settings.ts';

export class DaemonNotFound extends Error {}

export async function handOver(
  config: Config,
  request: { op: 'push'; path: string; tag: string } | { op: 'fetch'; name: string; dest: string },
): Promise<boolean> {
  const socket = config.daemonSocket!;
  const answer: Answer | undefined = await askDaemon(
    socket,
    { ...request, fingerprint: configFingerprint(config) },
    { timeoutMs: (config.storageTimeout + 30) * 1000 },
  );
  if (!answer) {
    log.debug('no walship daemon answered; working locally', { socket });
    return false;
  }
  if (answer.ok) return true;
  if (answer.fallback) {
    log.warn(`walship daemon at ${socket} declined (${answer.message}); working locally`);
    return false;
  }
  if (answer.notFound) throw new DaemonNotFound(answer.message);
  throw new WalshipError((answer.exitCode ?? ExitCode.storage) as ExitCodeValue, answer.message);
}
