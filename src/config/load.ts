import { readFileSync } from 'node:fs';
import type * as z from 'zod/mini';
import { usageError } from '../errors.ts';
import { configEnv, defaultConfigPath, settings, type Config, type SettingKey } from './settings.ts';

export interface LoadOptions {
  /** --config, if given on the command line. */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Values from command-line flags; they win over env and file. */
  overrides?: Partial<Record<SettingKey, unknown>>;
}

const keys = Object.keys(settings) as SettingKey[];

/** Read the config file and environment into a validated Config, or throw one clear usage error. */
export function loadConfig(options: LoadOptions = {}): Config & { configPath?: string } {
  const env = options.env ?? process.env;
  const explicit = options.configPath ?? env[configEnv];
  const configPath = explicit || defaultConfigPath;
  const fromFile = readConfigFile(configPath, Boolean(explicit));

  const raw: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  for (const key of keys) {
    const envName = settings[key].env;
    const override = options.overrides?.[key];
    if (override !== undefined) {
      raw[key] = override;
      origin[key] = `--${kebab(key)}`;
    } else if (env[envName] !== undefined && env[envName] !== '') {
      raw[key] = env[envName];
      origin[key] = envName;
    } else if (fromFile && key in fromFile) {
      raw[key] = fromFile[key];
      origin[key] = `${configPath}: ${key}`;
    }
  }
  for (const name of Object.keys(env)) {
    if (name.startsWith('WALSHIP_') && name !== configEnv && !keys.some((k) => settings[k].env === name)) {
      throw usageError(`unknown environment variable ${name} (see walship --help for the WALSHIP_* settings)`);
    }
  }

  const config: Record<string, unknown> = {};
  for (const key of keys) {
    const result = (settings[key].schema as z.ZodMiniType).safeParse(raw[key]);
    if (!result.success) {
      const where = origin[key] ?? `${key} (${settings[key].env})`;
      const issue = result.error.issues[0];
      // Never echo a password back, even a malformed one.
      const shown = key === 'pgpassword' ? undefined : raw[key];
      throw usageError(`setting ${where}: ${issue ? describeIssue(issue, shown) : 'invalid value'}`);
    }
    config[key] = result.data;
  }
  return { ...(config as Config), configPath: fromFile ? configPath : undefined };
}

function readConfigFile(path: string, required: boolean): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!required && code === 'ENOENT') return undefined;
    throw usageError(`config file ${path}: cannot read it (${code ?? (err as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // V8 quotes the offending text in some messages (Unexpected token 'h', ..."password": hunter2"...
    // is not valid JSON); the file may hold a password, so never repeat the file's text.
    const message = (err as Error).message;
    const reason = message.startsWith('Unexpected token') ? 'unexpected character' : message.replace(/, (\.\.\.)?".*$/s, '');
    throw usageError(`config file ${path}: not valid JSON (${reason})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw usageError(`config file ${path}: expected a JSON object of settings`);
  }
  for (const key of Object.keys(parsed)) {
    if (!(key in settings)) throw usageError(`config file ${path}: unknown setting '${key}'`);
  }
  return parsed as Record<string, unknown>;
}

function describeIssue(issue: z.core.$ZodIssue, value: unknown): string {
  const got = value === undefined ? '' : `, got ${typeof value === 'string' ? `'${value}'` : JSON.stringify(value)}`;
  switch (issue.code) {
    case 'invalid_value':
      return `expected one of ${issue.values.join(', ')}${got}`;
    case 'too_small':
      return issue.origin === 'string' ? `must not be empty${got}` : `must be ${issue.inclusive === false ? 'greater than' : 'at least'} ${issue.minimum}${got}`;
    case 'too_big':
      return `must be at most ${issue.maximum}${got}`;
    case 'invalid_type':
      return `expected ${issue.expected === 'number' || issue.expected === 'int' ? 'a number' : issue.expected === 'array' ? 'a comma-separated list' : `a ${issue.expected}`}${got}`;
    case 'invalid_format':
      return `invalid ${issue.format}${got}`;
    default:
      return `invalid value${got}`;
  }
}

export const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** The storage URL, or a usage error naming the setting when it is missing. */
export function requireStorage(config: Config): string {
  if (!config.storage) {
    throw usageError(`setting storage (${settings.storage.env}) is not set: give a repository URL such as file:///var/backups/walship`);
  }
  return config.storage;
}
