/**
 * One line per event on stderr (PostgreSQL's log when walship runs as archive/restore command).
 * Text by default, JSON with WALSHIP_LOG_FORMAT=json. Callers never pass secrets in fields.
 */
const levels = { error: 0, warn: 1, info: 2, debug: 3 } as const;
export type LogLevel = keyof typeof levels;
export type LogFields = Record<string, string | number | boolean | undefined>;

let threshold: number = levels.info;
let json = false;
let component = 'walship';

export function configureLog(options: { level?: LogLevel; format?: 'text' | 'json'; command?: string }): void {
  if (options.level) threshold = levels[options.level];
  if (options.format) json = options.format === 'json';
  if (options.command) component = `walship ${options.command}`;
}

function write(level: LogLevel, message: string, fields?: LogFields): void {
  if (levels[level] > threshold) return;
  let line: string;
  if (json) {
    line = JSON.stringify({ time: new Date().toISOString(), level, component, msg: message, ...fields });
  } else {
    const extra = fields
      ? Object.entries(fields)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => ` ${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : v}`)
          .join('')
      : '';
    line = `${component}: ${level === 'info' ? '' : `${level}: `}${message}${extra}`;
  }
  process.stderr.write(`${line}\n`);
}

export const log = {
  error: (message: string, fields?: LogFields) => write('error', message, fields),
  warn: (message: string, fields?: LogFields) => write('warn', message, fields),
  info: (message: string, fields?: LogFields) => write('info', message, fields),
  debug: (message: string, fields?: LogFields) => write('debug', message, fields),
  enabled: (level: LogLevel) => levels[level] <= threshold,
};
