/**
 * The thin client side of `walship daemon`: connect to its socket, send one request, read one
 * answer. Any trouble reaching the daemon (no socket, refused, it died mid-request, timeout)
 * yields `undefined`, and the caller does the work itself: pushes and fetches are idempotent, so
 * doing one again after a daemon half-did it is safe.
 */
import { connect } from 'node:net';
import type { Answer, Request } from './protocol.ts';

export interface AskOptions {
  /** Give up waiting for the answer after this long (then the caller works locally). */
  timeoutMs: number;
  /** Give up connecting after this long. */
  connectTimeoutMs?: number;
}

export function askDaemon(socketPath: string, request: Request, options: AskOptions): Promise<Answer | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    let buffer = '';
    const done = (answer: Answer | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const socket = connect(socketPath);
    let timer = setTimeout(() => done(undefined), options.connectTimeoutMs ?? 2000);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      clearTimeout(timer);
      timer = setTimeout(() => done(undefined), options.timeoutMs);
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf('\n');
      if (end < 0) return;
      try {
        done(JSON.parse(buffer.slice(0, end)) as Answer);
      } catch {
        done(undefined);
      }
    });
    socket.on('error', () => done(undefined));
    socket.on('close', () => done(undefined));
  });
}
