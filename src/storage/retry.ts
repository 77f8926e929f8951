import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { oneLine, storageError, WalshipError } from '../errors.ts';
import { log } from '../log.ts';
import { ObjectExistsError, ObjectNotFoundError } from './storage.ts';

/**
 * The one retry/timeout policy every cloud backend uses (DESIGN §3: "every call has a timeout and
 * retries with jittered backoff on throttling and 5xx; nothing can hang forever").
 *
 * - `run()` performs one storage operation: each attempt gets an AbortSignal that fires on the
 *   per-attempt timeout or on the operation's total deadline (`storageTimeout`); transient failures
 *   (429, 5xx, SlowDown, connection resets, timeouts) are retried with full-jitter exponential
 *   backoff while the deadline allows; the final failure is a storage error (exit 5) naming the
 *   location and carrying the backend's message, with anything secret-looking redacted.
 * - `awsRetryStrategy()` drives the AWS SDK's own per-request retry loop with the same
 *   classification and backoff (so the parts of a multipart upload are retried one by one).
 * - `resumingRead()` turns a ranged GET into a stream that detects truncation (fewer bytes than the
 *   object's length) and stalls, and resumes from the last byte received, pinned to the same
 *   object version.
 *
 * Never retried: ObjectExistsError, ObjectNotFoundError, any WalshipError, a 4xx other than
 * 408/429, and a request whose body was a stream already consumed (callers say `replayable: false`).
 */
export interface RetryOptions {
  /** For messages: the repository location, never containing credentials. */
  location: string;
  /** Total time one operation may take, retries included. */
  deadlineMs: number;
  /** Time one attempt (one request, or one bounded part) may take; default min(60 s, deadline). */
  attemptTimeoutMs?: number;
  /** First backoff step; default 100 ms. */
  baseDelayMs?: number;
  /** Largest backoff step; default 10 s. */
  maxDelayMs?: number;
  /** Attempts per operation (1 = no retry); default 10. */
  maxAttempts?: number;
  /** Where retry lines go (debug level). */
  log?: (line: string) => void;
}

export interface RunOptions {
  /** False when the request consumes a stream that cannot be sent again: no retry then. */
  replayable?: boolean;
  /** False when the SDK does its own retrying under this policy (awsRetryStrategy): deadline only. */
  retry?: boolean;
  /** Per-attempt timeout override; 0 = none (the SDK's idle timeout and the deadline still apply). */
  attemptTimeoutMs?: number;
}

/** The default retry logger: walship's log at debug level (shown with WALSHIP_LOG_LEVEL=debug). */
export function debugLog(line: string): void {
  log.debug(line);
}

/** Thrown into an attempt when its own timeout (not the operation deadline) fires. */
export class AttemptTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(ms: number) {
    super(`no answer within ${ms / 1000} s`);
    this.name = 'TimeoutError';
  }
}

/** The operation's total deadline passed. */
export class DeadlineError extends Error {
  constructor(ms: number) {
    super(`did not finish within ${ms / 1000} s`);
    this.name = 'DeadlineError';
  }
}

/** A download ended before the object's length: retried by resuming, or surfaced. */
export class TruncatedError extends Error {
  readonly code = 'EWALSHIP_TRUNCATED';
  constructor(received: number, expected: number) {
    super(`download ended after ${received} of ${expected} bytes`);
    this.name = 'TruncatedError';
  }
}

const transientStatus = new Set([408, 429, 500, 502, 503, 504]);
const transientNames = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequests',
  'TooManyRequestsException',
  'RequestTimeout',
  'RequestTimeoutException',
  'RequestLimitExceeded',
  'InternalError',
  'ServiceUnavailable',
  'ServerBusy',
  'OperationTimedOut',
  'ConditionalRequestConflict', // S3: a concurrent conditional write is in flight; retry answers 412 or succeeds
  'TimeoutError',
  'EWALSHIP_TRUNCATED',
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
  'REQUEST_SEND_ERROR', // Azure core: network failure
]);
const transientMessage =
  /socket hang up|ECONNRESET|EPIPE|premature close|aborted|other side closed|network (socket )?(error|disconnected)|timed? ?out|request timeout|received less data than required/i;

/** The HTTP status an SDK error carries, whatever the SDK. */
export function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as Record<string, any>;
  const candidates = [e.$metadata?.httpStatusCode, e.statusCode, e.status, e.response?.status, e.response?.statusCode, e.code];
  for (const value of candidates) if (typeof value === 'number' && value >= 100 && value < 600) return value;
  return undefined;
}

/** True for throttling, server errors, timeouts and network failures: worth another attempt. */
export function isTransient(err: unknown, depth = 0): boolean {
  if (err === null || err === undefined || depth > 4) return false;
  if (err instanceof ObjectExistsError || err instanceof ObjectNotFoundError || err instanceof WalshipError) return false;
  if (err instanceof DeadlineError) return false;
  if (err instanceof AttemptTimeoutError || err instanceof TruncatedError) return true;
  if (typeof err !== 'object') return false;
  const e = err as Record<string, any>;
  const status = statusOf(err);
  if (status !== undefined) {
    if (transientStatus.has(status)) return true;
    if (status === 409 && (e.name === 'ConditionalRequestConflict' || e.Code === 'ConditionalRequestConflict')) return true;
    if (status >= 400 && status < 500) return false;
  }
  for (const name of [e.name, e.code, e.Code, e.errno]) {
    if (typeof name === 'string' && transientNames.has(name)) return true;
  }
  if (e.$retryable) return true;
  // An AbortError we did not ask for (a socket closed under the SDK) reads like a reset.
  if (typeof e.message === 'string' && e.name !== 'AbortError' && transientMessage.test(e.message)) return true;
  if (e.cause) return isTransient(e.cause, depth + 1);
  if (Array.isArray(e.errors)) return e.errors.some((inner: unknown) => isTransient(inner, depth + 1));
  return false;
}

const secretParam =
  /\b(sig|se|st|sp|sv|spr|srt|ss|sks|skoid|sktid|skt|ske|skv|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|AccountKey|SharedAccessSignature|access_token|upload_id|key)=([^&;\s"'<>]+)/gi;

/** Strip anything credential-like from a message (SAS signatures, account keys, presigned parts). */
export function redact(text: string): string {
  return text
    .replace(secretParam, (_, name: string) => `${name}=REDACTED`)
    .replace(/\bBearer\s+[A-Za-z0-9._~+/=-]+/g, 'Bearer REDACTED')
    .replace(/(Authorization:?\s*)\S+(\s+\S+)?/gi, '$1REDACTED');
}

/** The backend's own words for a failure, on one line, status and code included, secrets removed. */
export function describe(err: unknown): string {
  if (!(err instanceof Error) && (typeof err !== 'object' || err === null)) return redact(String(err));
  const e = err as Record<string, any>;
  const status = statusOf(err);
  const code = [e.Code, e.code, e.name].find(
    (v) => typeof v === 'string' && v !== 'Error' && v !== 'RestError' && v !== 'ApiError' && v !== 'GaxiosError',
  ) as string | undefined;
  let message = oneLine(err);
  if (!message || message === 'UnknownError' || message === code) message = '';
  if (!message && e.cause) message = oneLine(e.cause);
  const parts = [status !== undefined ? `HTTP ${status}` : '', code ?? '', message].filter(Boolean);
  // "SlowDown: SlowDown" and the like read badly; keep distinct parts only.
  return redact([...new Set(parts)].join(' ').slice(0, 500) || 'unknown error');
}

interface AwsRetryToken {
  getRetryCount(): number;
  getRetryDelay(): number;
}

/** Structural RetryStrategyV2 of the AWS SDK (kept SDK-free here). */
export interface AwsRetryStrategy {
  mode: string;
  acquireInitialRetryToken(scope: string): Promise<AwsRetryToken>;
  refreshRetryTokenForRetry(token: AwsRetryToken, info: { error: unknown; retryAfterHint?: Date }): Promise<AwsRetryToken>;
  recordSuccess(token: AwsRetryToken): void;
}

export class RetryPolicy {
  readonly location: string;
  readonly deadlineMs: number;
  readonly attemptTimeoutMs: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly maxAttempts: number;
  readonly log: (line: string) => void;

  constructor(options: RetryOptions) {
    this.location = options.location;
    this.deadlineMs = options.deadlineMs;
    this.attemptTimeoutMs = Math.min(options.attemptTimeoutMs ?? 60_000, options.deadlineMs);
    this.baseDelayMs = options.baseDelayMs ?? 100;
    this.maxDelayMs = options.maxDelayMs ?? 10_000;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 10);
    this.log = options.log ?? debugLog;
  }

  /** Full-jitter exponential backoff before retry number `retry` (1-based). */
  delay(retry: number, hintMs?: number): number {
    const cap = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(retry - 1, 20));
    const jittered = Math.round(cap / 2 + (Math.random() * cap) / 2);
    return hintMs !== undefined && hintMs > jittered ? Math.min(hintMs, this.maxDelayMs) : jittered;
  }

  /**
   * Run one operation. `work` gets a signal to pass to the SDK call; it fires on the attempt's
   * timeout or the operation's deadline. Returns the first success; throws a storage error, or the
   * typed not-found/exists errors untouched.
   */
  async run<T>(what: string, work: (signal: AbortSignal, attempt: number) => Promise<T>, options: RunOptions = {}): Promise<T> {
    const deadline = new AbortController();
    const deadlineError = new DeadlineError(this.deadlineMs);
    const deadlineTimer = setTimeout(() => deadline.abort(deadlineError), this.deadlineMs);
    deadlineTimer.unref();
    const endsAt = Date.now() + this.deadlineMs;
    const attemptMs = options.attemptTimeoutMs ?? this.attemptTimeoutMs;
    const retrying = options.retry !== false && options.replayable !== false;
    try {
      for (let attempt = 1; ; attempt++) {
        const own = new AbortController();
        const timer = attemptMs > 0 ? setTimeout(() => own.abort(new AttemptTimeoutError(attemptMs)), attemptMs) : undefined;
        timer?.unref();
        const signal = AbortSignal.any([deadline.signal, own.signal]);
        try {
          // Race as well as signal: an SDK that ignores the signal still cannot hold us past it.
          return await raceSignal(work(signal, attempt), signal);
        } catch (caught) {
          let err = caught;
          if (deadline.signal.aborted) throw this.fail(what, deadlineError, attempt);
          if (own.signal.aborted && !(err instanceof ObjectExistsError || err instanceof ObjectNotFoundError)) {
            err = own.signal.reason;
          }
          if (!retrying || !isTransient(err) || attempt >= this.maxAttempts) throw this.fail(what, err, attempt);
          const wait = this.delay(attempt, retryAfterMs(err));
          if (Date.now() + wait >= endsAt) throw this.fail(what, err, attempt);
          this.log(`storage ${this.location}: ${what}: attempt ${attempt} failed (${describe(err)}); retrying in ${wait} ms`);
          try {
            await sleep(wait, undefined, { signal: deadline.signal, ref: false });
          } catch {
            throw this.fail(what, deadlineError, attempt);
          }
        } finally {
          clearTimeout(timer);
        }
      }
    } finally {
      clearTimeout(deadlineTimer);
    }
  }

  /** The final error: typed errors pass through; anything else becomes exit 5 with the backend's message. */
  fail(what: string, err: unknown, attempts = 1): Error {
    if (err instanceof ObjectExistsError || err instanceof ObjectNotFoundError || err instanceof WalshipError) return err;
    const after = attempts > 1 ? ` after ${attempts} attempts` : '';
    return storageError(`storage ${this.location}: ${what} failed${after}: ${describe(err)}`, err);
  }

  /**
   * A RetryStrategyV2 for the AWS SDK: its retry middleware calls this per HTTP request (including
   * each part of a multipart upload), never retries streaming bodies, and stops sleeping when the
   * operation's abort signal (from `run`) fires.
   */
  awsRetryStrategy(): AwsRetryStrategy {
    const token = (count: number, delay: number): AwsRetryToken => ({ getRetryCount: () => count, getRetryDelay: () => delay });
    return {
      mode: 'walship',
      acquireInitialRetryToken: async () => token(0, 0),
      refreshRetryTokenForRetry: async (previous, info) => {
        const retry = previous.getRetryCount() + 1;
        if (!isTransient(info.error) || retry >= this.maxAttempts) throw info.error;
        const hint = info.retryAfterHint ? info.retryAfterHint.getTime() - Date.now() : undefined;
        const wait = this.delay(retry, hint);
        this.log(`storage ${this.location}: request attempt ${retry} failed (${describe(info.error)}); retrying in ${wait} ms`);
        return token(retry, wait);
      },
      recordSuccess: () => {},
    };
  }

  /**
   * A download that survives truncation and stalls: reads `first` (the stream for offset 0), counts
   * bytes against `size`, and on a transient error, a premature end or no data for the attempt
   * timeout, reopens at the current offset with `open` (which must pin the same object version, e.g.
   * If-Match on the ETag). Gives up with a storage error after `maxAttempts` resumes without progress.
   */
  resumingRead(
    what: string,
    first: Readable,
    size: number | undefined,
    open: (offset: number, signal: AbortSignal) => Promise<Readable>,
  ): Readable {
    const policy = this;
    const idleMs = this.attemptTimeoutMs;
    async function* bytes(): AsyncGenerator<Buffer> {
      let source: Readable | undefined = first;
      let offset = 0;
      let failures = 0;
      try {
        for (;;) {
          try {
            for await (const chunk of withIdleTimeout(source, idleMs)) {
              offset += chunk.length;
              failures = 0;
              yield chunk;
            }
            if (size === undefined || offset === size) return;
            if (offset > size) throw storageError(`storage ${policy.location}: ${what}: got ${offset} bytes, more than the object's ${size}`);
            throw new TruncatedError(offset, size);
          } catch (err) {
            source.destroy();
            failures++;
            // An abort we did not ask for (the connection went away under the SDK) is an interruption too.
            const interrupted = isTransient(err) || (err as Error)?.name === 'AbortError';
            if (size === undefined || !interrupted || failures >= policy.maxAttempts) throw policy.fail(what, err, failures);
            const wait = policy.delay(failures);
            policy.log(`storage ${policy.location}: ${what}: download interrupted at byte ${offset} (${describe(err)}); resuming in ${wait} ms`);
            await sleep(wait);
            source = undefined;
            source = await policy.run(`${what} (resume at byte ${offset})`, (signal) => open(offset, signal));
          }
        }
      } finally {
        source?.destroy();
      }
    }
    return Readable.from(bytes(), { objectMode: false, highWaterMark: 1 << 20 });
  }
}

function retryAfterMs(err: unknown): number | undefined {
  const e = err as Record<string, any> | undefined;
  const header = e?.response?.headers?.['retry-after'] ?? e?.$response?.headers?.['retry-after'];
  const seconds = Number(header);
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
}

/** Reject as soon as `signal` fires, whether or not `work` listens to it. */
function raceSignal<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Iterate a stream, failing with AttemptTimeoutError if no chunk arrives for `ms`. */
async function* withIdleTimeout(source: Readable, ms: number): AsyncGenerator<Buffer> {
  const iterator = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new AttemptTimeoutError(ms)), ms);
        timer.unref();
      });
      let step: IteratorResult<Buffer>;
      try {
        step = await Promise.race([iterator.next(), idle]);
      } finally {
        clearTimeout(timer);
      }
      if (step.done) return;
      yield Buffer.isBuffer(step.value) ? step.value : Buffer.from(step.value);
    }
  } finally {
    source.destroy();
  }
}

/**
 * Read up to `limit` bytes of a stream. `done` means the stream ended within the limit, so the
 * whole body is in `head` and the put can be sent (and retried) as one request.
 */
export async function readHead(stream: Readable, limit: number): Promise<{ head: Buffer; done: boolean; rest: AsyncIterator<Buffer> }> {
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let length = 0;
  while (length < limit) {
    const step = await iterator.next();
    if (step.done) return { head: Buffer.concat(chunks, length), done: true, rest: iterator };
    const chunk = Buffer.isBuffer(step.value) ? step.value : Buffer.from(step.value);
    chunks.push(chunk);
    length += chunk.length;
  }
  return { head: Buffer.concat(chunks, length), done: false, rest: iterator };
}

/** The rest of a stream after `readHead`, re-cut into Buffers of exactly `size` (the last may be shorter). */
export async function* blocks(head: Buffer, rest: AsyncIterator<Buffer>, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [head];
  let length = head.length;
  for (;;) {
    while (length >= size) {
      const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, length);
      yield Buffer.from(all.subarray(0, size)); // a copy, so the tail does not pin the whole buffer
      const tail = all.subarray(size);
      pending = tail.length ? [tail] : [];
      length = tail.length;
    }
    const step = await rest.next();
    if (step.done) break;
    const chunk = Buffer.isBuffer(step.value) ? step.value : Buffer.from(step.value);
    pending.push(chunk);
    length += chunk.length;
  }
  if (length > 0) yield Buffer.concat(pending, length);
}

/** Run `task` over `items` with at most `limit` in flight; the first failure stops new work and is thrown. */
export async function eachLimited<T>(items: AsyncIterable<T> | Iterable<T>, limit: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: { err: unknown } | undefined;
  let index = 0;
  for await (const item of items as AsyncIterable<T>) {
    if (failure) break;
    const p: Promise<void> = task(item, index++).then(
      () => {
        running.delete(p);
      },
      (err) => {
        running.delete(p);
        failure ??= { err };
      },
    );
    running.add(p);
    if (running.size >= limit) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure.err;
}

/** Bytes of an object key for a backend: the repository prefix joined to a validated relative key. */
export function objectName(prefix: string, key: string): string {
  if (key.startsWith('/') || key.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    throw new Error(`invalid object key '${key}'`);
  }
  return prefix ? `${prefix}/${key}` : key;
}

/** The listing prefix for a relative prefix (which may be '' or end mid-name). */
export function listPrefix(prefix: string, relative: string): string {
  return prefix ? `${prefix}/${relative}` : relative;
}

/** True if `value` looks like a boolean "off" in a URL option. */
export function optionOff(value: string | undefined): boolean {
  return value !== undefined && /^(false|0|no|off)$/i.test(value);
}

export function optionOn(value: string | undefined): boolean {
  return value !== undefined && /^(true|1|yes|on|)$/i.test(value);
}
