/**
 * One request line, one answer line, over a local socket: how `walship daemon` and the WAL
 * prefetcher talk to the CLI. A connection carries one exchange.
 */
import { connect, type Socket } from 'node:net';

/** Longest request line a server waits for; a connection sending more without a newline is dropped. */
const maxRequestBytes = 64 * 1024;

/** Server side: call `onLine` with each request line of `socket` (errors on the connection are the client's business). */
export function readRequests(socket: Socket, onLine: (line: string) => void): void {
  let buffer = '';
  socket.setEncoding('utf8');
  socket.on('error', () => {});
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    const end = buffer.indexOf('\n');
    if (end < 0) {
      if (buffer.length > maxRequestBytes) socket.destroy();
      return;
    }
    const line = buffer.slice(0, end);
    buffer = '';
    onLine(line);
  });
}

export interface AskLineOptions {
  /** Give up after this long: the whole exchange, or, with `connectTimeoutMs`, the wait for the answer once connected. */
  timeoutMs: number;
  /** Give up connecting after this long. */
  connectTimeoutMs?: number;
  /** Send the line and expect no answer (end the connection's writing side at once). */
  noAnswer?: boolean;
}

/**
 * Client side: send `line` to the socket at `address`. Resolves with the answer's first line; null
 * when the server closed the connection without one; undefined when it could not be reached, the
 * connection failed or the time ran out.
 */
export function askLine(address: string, line: string, options: AskLineOptions): Promise<string | null | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    let connected = false;
    let buffer = '';
    const done = (answer: string | null | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const socket = connect(address);
    let timer = setTimeout(() => done(undefined), options.connectTimeoutMs ?? options.timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      connected = true;
      if (options.connectTimeoutMs !== undefined) {
        clearTimeout(timer);
        timer = setTimeout(() => done(undefined), options.timeoutMs);
      }
      socket.write(`${line}\n`);
      if (options.noAnswer) socket.end();
    });
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf('\n');
      if (end >= 0) done(buffer.slice(0, end));
    });
    socket.on('error', () => done(undefined));
    socket.on('close', () => done(connected ? null : undefined));
  });
}
