/** Exit codes are part of walship's contract (DESIGN §7); scripts and PostgreSQL rely on them. */
export const ExitCode = {
  ok: 0,
  /** wal-fetch: the requested WAL file is not in the repository. */
  notFound: 1,
  /** bad flag, bad or missing setting. */
  usage: 2,
  /** refused: conflicting WAL, non-empty target, unreachable recovery target. */
  refused: 3,
  /** checksum mismatch, decryption failure, corrupt object. */
  integrity: 4,
  /** storage unavailable after retries. */
  storage: 5,
  /** PostgreSQL (or one of its tools) failed. */
  postgres: 6,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** A failure the user can act on: one line of text and a documented exit code. */
export class WalshipError extends Error {
  readonly exitCode: ExitCodeValue;
  constructor(exitCode: ExitCodeValue, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WalshipError';
    this.exitCode = exitCode;
  }
}

export const usageError = (message: string) => new WalshipError(ExitCode.usage, message);
export const refusedError = (message: string) => new WalshipError(ExitCode.refused, message);
export const integrityError = (message: string, cause?: unknown) => new WalshipError(ExitCode.integrity, message, { cause });
export const storageError = (message: string, cause?: unknown) => new WalshipError(ExitCode.storage, message, { cause });
export const postgresError = (message: string, cause?: unknown) => new WalshipError(ExitCode.postgres, message, { cause });

/** The message of anything thrown, on one line. */
export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
