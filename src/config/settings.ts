import { z } from 'zod';

/**
 * Every setting walship reads, declared once: config-file key, environment variable, meaning,
 * validation. The loader, `walship --help` and the README's table are all generated from this list.
 */
export interface SettingDeclaration {
  /** Environment variable (wins over the file). */
  env: string;
  /** What the setting means, one sentence, for help and docs. */
  doc: string;
  schema: z.ZodType;
}

const positiveInt = z.coerce.number().int().min(1);
const list = z.preprocess(
  (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
  z.array(z.string().min(1)),
);

export const settings = {
  storage: {
    env: 'WALSHIP_STORAGE',
    doc: 'repository URL: file:///path, s3://bucket/prefix, gs://bucket/prefix or azure://container/prefix (query options endpoint, region, pathStyle, account, ...)',
    schema: z.string().min(1).optional(),
  },
  compression: {
    env: 'WALSHIP_COMPRESSION',
    doc: 'compression of new objects: zstd (default), lz4 or none; reading detects it per object',
    schema: z.enum(['zstd', 'lz4', 'none']).default('zstd'),
  },
  compressionLevel: {
    env: 'WALSHIP_COMPRESSION_LEVEL',
    doc: 'compression level (zstd 1-19, default 1; lz4 ignores it)',
    schema: z.coerce.number().int().min(-7).max(22).optional(),
  },
  recipients: {
    env: 'WALSHIP_RECIPIENTS',
    doc: 'age recipients (age1...), comma-separated; when set, new objects are encrypted',
    schema: list.optional(),
  },
  recipientsFile: {
    env: 'WALSHIP_RECIPIENTS_FILE',
    doc: 'file with one age recipient per line (# comments allowed)',
    schema: z.string().min(1).optional(),
  },
  identityFile: {
    env: 'WALSHIP_IDENTITY_FILE',
    doc: 'age identity file (AGE-SECRET-KEY-1...) used to read encrypted objects',
    schema: z.string().min(1).optional(),
  },
  passphraseFile: {
    env: 'WALSHIP_PASSPHRASE_FILE',
    doc: 'file holding a passphrase; encrypts and decrypts with age scrypt instead of keys',
    schema: z.string().min(1).optional(),
  },
  uploadConcurrency: {
    env: 'WALSHIP_UPLOAD_CONCURRENCY',
    doc: 'parallel uploads (backup parts, lookahead WAL)',
    schema: positiveInt.max(64).default(2),
  },
  downloadConcurrency: {
    env: 'WALSHIP_DOWNLOAD_CONCURRENCY',
    doc: 'parallel downloads (backup parts, prefetched WAL)',
    schema: positiveInt.max(64).default(2),
  },
  storageTimeout: {
    env: 'WALSHIP_STORAGE_TIMEOUT',
    doc: 'seconds one storage operation may take, retries included, before walship gives up (exit 5)',
    schema: z.coerce.number().positive().default(300),
  },
  logFormat: {
    env: 'WALSHIP_LOG_FORMAT',
    doc: 'log lines on stderr: text or json',
    schema: z.enum(['text', 'json']).default('text'),
  },
  logLevel: {
    env: 'WALSHIP_LOG_LEVEL',
    doc: 'error, warn, info or debug',
    schema: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
  },
  pgdata: { env: 'PGDATA', doc: 'data directory of the local cluster', schema: z.string().min(1).optional() },
  pghost: { env: 'PGHOST', doc: 'libpq host or socket directory', schema: z.string().min(1).optional() },
  pgport: { env: 'PGPORT', doc: 'libpq port', schema: z.coerce.number().int().min(1).max(65535).optional() },
  pguser: { env: 'PGUSER', doc: 'libpq user', schema: z.string().min(1).optional() },
  pgdatabase: { env: 'PGDATABASE', doc: 'libpq database', schema: z.string().min(1).optional() },
  pgpassword: { env: 'PGPASSWORD', doc: 'libpq password (prefer ~/.pgpass)', schema: z.string().optional() },
} satisfies Record<string, SettingDeclaration>;

export type SettingKey = keyof typeof settings;
export type Config = { [K in SettingKey]: z.output<(typeof settings)[K]['schema']> };

/** The environment variable naming the config file, and the file used when neither it nor --config is given. */
export const configEnv = 'WALSHIP_CONFIG';
export const defaultConfigPath = '/etc/walship/walship.json';
