/**
 * The thin client side of `walship daemon`: connect to its socket, send one request, read one
 * answer. Any trouble reaching the daemon (no socket, refused, it died mid-request, timeout)
 * yields `undefined`, and the caller does the work itself: pushes and fetches are idempotent, so
 * doing one again after a daemon half-did it is safe.
 */
import { askLine } from '../line-socket.ts';
import type { Answer, Request } from './protocol.ts';

export interface AskOptions {
  /** Give up waiting for the answer after this long (then the caller works locally). */
  timeoutMs: number;
  /** Give up connecting after this long. */
  connectTimeoutMs?: number;
}

export async function askDaemon(socketPath: string, request: Request, options: AskOptions): Promise<Answer | undefined> {
  const answer = await askLine(socketPath, JSON.stringify(request), { timeoutMs: options.timeoutMs, connectTimeoutMs: options.connectTimeoutMs ?? 2000 });
  if (!answer) return undefined;
  try {
    return JSON.parse(answer) as Answer;
  } catch {
    return undefined;
  }
}
