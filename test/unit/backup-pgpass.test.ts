import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pgpassLookup } from '../../src/pg/pgpass.ts';

const root = await mkdtemp(join(tmpdir(), 'walship-pgpass-'));
after(() => rm(root, { recursive: true, force: true }));

test('.pgpass lookup as libpq does it: first match wins, wildcards, escapes, sockets match localhost', async () => {
  const file = join(root, 'pgpass');
  await writeFile(
    file,
    ['# comment', 'db.example:5432:app:alice:first', '*:5433:*:bob:p\\:w\\\\d:with:colons', 'localhost:5432:postgres:postgres:socket', '*:*:*:alice:fallback', ''].join('\n'),
  );
  await chmod(file, 0o600);
  const look = (host: string, port: number, database: string, user: string) => pgpassLookup({ host, port, database, user }, { file });
  assert.equal(look('db.example', 5432, 'app', 'alice'), 'first');
  assert.equal(look('db.example', 5432, 'other', 'alice'), 'fallback');
  assert.equal(look('anywhere', 5433, 'x', 'bob'), 'p:w\\d:with:colons');
  assert.equal(look('/var/run/postgresql', 5432, 'postgres', 'postgres'), 'socket');
  assert.equal(look('/var/run/postgresql', 5432, 'postgres', 'carol'), undefined);
});

test('a password file readable by others is ignored, with a warning', async () => {
  const file = join(root, 'open');
  await writeFile(file, '*:*:*:*:secret\n');
  await chmod(file, 0o644);
  const warnings: string[] = [];
  assert.equal(pgpassLookup({ host: 'h', port: 1, database: 'd', user: 'u' }, { file, warn: (m) => warnings.push(m) }), undefined);
  assert.match(warnings[0]!, /has group or world access/);
  assert.equal(pgpassLookup({ host: 'h', port: 1, database: 'd', user: 'u' }, { file: join(root, 'absent') }), undefined);
});
