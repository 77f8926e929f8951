import * as z from 'zod/mini';

/**
 * Every setting walship reads, declared once: config-file key, environment variable, meaning,
 * validation. The loader, `walship --help` and the README's table are all generated from this list.
 */
export interface SettingDeclaration {
  /** Environment variable (wins over the file). */
  env: string;
  /** What the setting means, one sentence, for help and docs. */
  doc: string;
  schema: z.ZodMiniType;
}

// zod/mini: the same validation as full zod at a fraction of the start-up cost (wal-push runs per segment).
const text = z.string().check(z.minLength(1));
const optionalText = z.optional(text);
const int = (min: number, max: number) => z.coerce.number().check(z.int(), z.minimum(min), z.maximum(max));
const list = z.pipe(
  z.transform((v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v)),
  z.array(text),
);

export const settings = {
  storage: {
    env: 'WALSHIP_STORAGE',
    doc: 'repository URL: file:///path, s3://bucket/prefix, gs://bucket/prefix or azure://container/prefix (query options endpoint, region, pathStyle, account, ...)',
    schema: optionalText,
  },
  compression: {
    env: 'WALSHIP_COMPRESSION',
    doc: 'compression of new objects: zstd (default), lz4 or none; reading detects it per object',
    schema: z._default(z.enum(['zstd', 'lz4', 'none']), 'zstd'),
  },
  compressionLevel: {
    env: 'WALSHIP_COMPRESSION_LEVEL',
    doc: 'compression level (zstd 1-19, default 1; lz4 ignores it)',
    schema: z.optional(int(-7, 22)),
  },
  recipients: {
    env: 'WALSHIP_RECIPIENTS',
    doc: 'age recipients (age1...), comma-separated; when set, new objects are encrypted',
    schema: z.optional(list),
  },
  recipientsFile: {
    env: 'WALSHIP_RECIPIENTS_FILE',
    doc: 'file with one age recipient per line (# comments allowed)',
    schema: optionalText,
  },
  identityFile: {
    env: 'WALSHIP_IDENTITY_FILE',
    doc: 'age identity file (AGE-SECRET-KEY-1...) used to read encrypted objects',
    schema: optionalText,
  },
  passphraseFile: {
    env: 'WALSHIP_PASSPHRASE_FILE',
    doc: 'file holding a passphrase; encrypts and decrypts with age scrypt instead of keys',
    schema: optionalText,
  },
  passphraseWorkFactor: {
    env: 'WALSHIP_PASSPHRASE_WORK_FACTOR',
    doc: 'scrypt work factor (log2 N, 10-22, default 15) for objects encrypted with the passphrase; each object costs 2^N x 1 KiB of memory and the matching time, on push and on fetch',
    schema: z._default(int(10, 22), 15),
  },
  allowUnencrypted: {
    env: 'WALSHIP_ALLOW_UNENCRYPTED',
    doc: 'true: store objects unencrypted even though walship.json records the repository as encrypted (normally refused, exit 3)',
    schema: z._default(z.union([z.boolean(), z.stringbool()]), false),
  },
  uploadConcurrency: {
    env: 'WALSHIP_UPLOAD_CONCURRENCY',
    doc: 'parallel uploads (backup parts, lookahead WAL)',
    schema: z._default(int(1, 64), 2),
  },
  downloadConcurrency: {
    env: 'WALSHIP_DOWNLOAD_CONCURRENCY',
    doc: 'parallel downloads (backup parts, prefetched WAL)',
    schema: z._default(int(1, 64), 2),
  },
  lookahead: {
    env: 'WALSHIP_LOOKAHEAD',
    doc: 'wal-push also uploads up to this many other WAL files PostgreSQL has marked ready (default 16), and records them under pg_wal/walship/archived so its later calls return at once (0 = off)',
    schema: z._default(int(0, 256), 16),
  },
  prefetch: {
    env: 'WALSHIP_PREFETCH',
    doc: 'wal-fetch fetches up to this many following segments ahead into pg_wal/walship/prefetch, in a background process (0 = off)',
    schema: z._default(int(0, 256), 16),
  },
  daemonSocket: {
    env: 'WALSHIP_DAEMON_SOCKET',
    doc: "unix socket of `walship daemon`; when set, wal-push and wal-fetch hand their work to the daemon listening there (and do it themselves if it is not)",
    schema: optionalText,
  },
  metricsAddress: {
    env: 'WALSHIP_METRICS_ADDRESS',
    doc: 'host:port where `walship daemon` serves Prometheus /metrics (default 127.0.0.1:9638; off to disable)',
    schema: z._default(text, '127.0.0.1:9638'),
  },
  storageTimeout: {
    env: 'WALSHIP_STORAGE_TIMEOUT',
    doc: 'seconds one storage operation may take, retries included, before walship gives up (exit 5)',
    schema: z._default(z.coerce.number().check(z.positive()), 300),
  },
  logFormat: {
    env: 'WALSHIP_LOG_FORMAT',
    doc: 'log lines on stderr: text or json',
    schema: z._default(z.enum(['text', 'json']), 'text'),
  },
  logLevel: {
    env: 'WALSHIP_LOG_LEVEL',
    doc: 'error, warn, info or debug',
    schema: z._default(z.enum(['error', 'warn', 'info', 'debug']), 'info'),
  },
  pgBinDir: {
    env: 'WALSHIP_PG_BIN_DIR',
    doc: 'directory of pg_dump, pg_dumpall, pg_restore and psql (dump-push, dump-fetch); default: PATH, then the newest /usr/lib/postgresql/*/bin',
    schema: optionalText,
  },
  backupPartSize: {
    env: 'WALSHIP_BACKUP_PART_SIZE',
    doc: 'uncompressed size of one base backup part (tar), bytes or with a unit (512MiB, 1GiB; default 1GiB); a part holds whole files, so it can exceed this by one file',
    schema: z._default(z.pipe(z.transform((v: unknown) => parseByteSize(v)), z.number().check(z.int(), z.minimum(1 << 20), z.maximum(2 ** 40))), 1 << 30),
  },
  archiveTimeout: {
    env: 'WALSHIP_ARCHIVE_TIMEOUT',
    doc: 'seconds backup-push waits for its stop WAL segment to reach the repository (archive_command) before failing',
    schema: z._default(z.coerce.number().check(z.positive()), 600),
  },
  pgdata: { env: 'PGDATA', doc: 'data directory of the local cluster', schema: optionalText },
  pghost: { env: 'PGHOST', doc: 'libpq host or socket directory', schema: optionalText },
  pgport: { env: 'PGPORT', doc: 'libpq port', schema: z.optional(int(1, 65535)) },
  pguser: { env: 'PGUSER', doc: 'libpq user', schema: optionalText },
  pgdatabase: { env: 'PGDATABASE', doc: 'libpq database', schema: optionalText },
  pgpassword: { env: 'PGPASSWORD', doc: 'libpq password (prefer ~/.pgpass)', schema: z.optional(z.string()) },
} satisfies Record<string, SettingDeclaration>;

/** "1GiB", "512MiB", "64MB", "1048576" → bytes (binary units; MB is read as MiB); anything else passes through to fail validation. */
function parseByteSize(value: unknown): unknown {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(value);
  if (!m) return Number.NaN;
  const scale = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Math.round(Number(m[1]) * scale);
}

export type SettingKey = keyof typeof settings;
export type Config = { [K in SettingKey]: z.output<(typeof settings)[K]['schema']> };

/** The environment variable naming the config file, and the file used when neither it nor --config is given. */
export const configEnv = 'WALSHIP_CONFIG';
export const defaultConfigPath = '/etc/walship/walship.json';
