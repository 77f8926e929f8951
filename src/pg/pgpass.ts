import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * The password libpq would take from the password file (PGPASSFILE, else ~/.pgpass): the first
 * line "hostname:port:database:username:password" matching the connection, '*' matching
 * anything, '\' escaping ':' and '\'. For a Unix-socket connection the hostname to match is
 * "localhost" (or the socket directory). Like libpq, a file readable by group or others is ignored.
 */
export function pgpassLookup(
  conn: { host: string; port: number; database: string; user: string },
  options: { file?: string | undefined; warn?: (message: string) => void } = {},
): string | undefined {
  const file = options.file ?? process.env.PGPASSFILE ?? join(homedir(), '.pgpass');
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) return undefined;
    if ((st.mode & 0o077) !== 0) {
      options.warn?.(`password file ${file} has group or world access; permissions should be u=rw (0600) or less: ignoring it, as libpq does`);
      return undefined;
    }
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const hosts = conn.host.startsWith('/') ? ['localhost', conn.host] : [conn.host];
  for (const line of text.split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue;
    const fields = splitFields(line);
    if (fields.length < 5) continue;
    const [host, port, database, user] = fields;
    const password = fields.slice(4).join(':');
    const match = (pattern: string, values: string[]) => pattern === '*' || values.includes(pattern);
    if (match(host!, hosts) && match(port!, [String(conn.port)]) && match(database!, [conn.database]) && match(user!, [conn.user])) return password;
  }
  return undefined;
}

function splitFields(line: string): string[] {
  const fields: string[] = [];
  let current = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) current += line[++i];
    else if (c === ':' && fields.length < 4) {
      fields.push(current);
      current = '';
    } else current += c;
  }
  fields.push(current);
  return fields;
}
