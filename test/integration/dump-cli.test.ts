/**
 * Issue 9 on real PostgreSQL 15 with the system pg_dump/pg_restore: dump-push, dump-list and
 * dump-fetch through the built CLI (bin/walship, by absolute path, with an environment the test
 * controls completely), into a file:// repository.
 *
 * - a database with several schemas and tables, an index, a view, SQL and PL/pgSQL functions, a
 *   trigger and large objects is dumped, restored into a new database, and compared: the
 *   `pg_dump --schema-only` output, row counts, large objects, a function's results;
 * - the stored object is readable with standard tools alone (`zstd -d | pg_restore --list`);
 * - --all: globals (roles) plus every database, fetched into a directory;
 * - an encrypted dump (WALSHIP_RECIPIENTS) is decrypted with the `age` CLI and read by
 *   `pg_restore --list`; an unencrypted dump-push into a repository recorded as encrypted is
 *   refused (skipped while src/codec/keys.ts does not encrypt);
 * - failures: missing database, wrong password, pg_dump dying mid-stream (exit 6, pg_dump's own
 *   message on one line, nothing listed, no object left), disk full on fetch (a 64 KiB tmpfs, as
 *   root: exit 2, no partial file), an existing output file and a non-empty target (exit 3);
 * - retention: `delete retain 1 --dumps` (dry run, then --confirm) keeps the newest of each series.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { clientBin, startCluster, type Cluster } from '../helpers/pg-cluster.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const walshipBin = join(repoRoot, 'bin', 'walship');
const isRoot = process.getuid?.() === 0;
const haveAge = existsSync('/usr/bin/age') && existsSync('/usr/bin/age-keygen');
const haveZstd = spawnSync('zstd', ['--version']).status === 0;

if (!existsSync(join(repoRoot, 'dist', 'cli.js'))) throw new Error(`${repoRoot}dist/cli.js is missing: run 'npm run build' before the CLI tests`);

interface Result {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Run the built CLI with exactly `env` (plus PATH, HOME, LANG): nothing leaks from the runner's environment. */
function walship(args: string[], env: Record<string, string | undefined>): Promise<Result> {
  const full: Record<string, string> = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', HOME: process.env.HOME ?? '/root' };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) full[k] = v;
  return new Promise((resolve, reject) => {
    execFile(walshipBin, args, { env: full, cwd: repoRoot, timeout: 120_000, maxBuffer: 256 << 20, encoding: 'buffer' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(new Error(`walship ${args.join(' ')}: ${err.message}\n${stderr}`));
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr: stderr.toString() });
    });
  });
}

function ok(r: Result, what: string): Result {
  assert.equal(r.code, 0, `${what} exited ${r.code}: ${r.stderr}`);
  return r;
}

function tool(name: string, args: string[], env: NodeJS.ProcessEnv, input?: Buffer): { code: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(name.includes('/') ? name : clientBin(name), args, { env: { ...process.env, ...env }, input, maxBuffer: 256 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const appSchema = `
CREATE SCHEMA sales;
CREATE TABLE sales.customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer_id int REFERENCES sales.customers, amount numeric(12,2), created timestamptz DEFAULT '2026-01-01');
CREATE INDEX orders_customer ON sales.orders (customer_id);
CREATE TABLE public.events (id int, payload jsonb, note text);
CREATE TABLE public.audit (at timestamptz DEFAULT now(), what text);
INSERT INTO sales.customers (name, email) SELECT 'c' || g, 'c' || g || '@example.com' FROM generate_series(1, 2000) g;
INSERT INTO sales.orders (customer_id, amount) SELECT 1 + g % 2000, (g % 1000) / 7.0 FROM generate_series(1, 40000) g;
INSERT INTO public.events SELECT g, jsonb_build_object('k', g, 'v', md5(g::text)), repeat(md5(g::text), 4) FROM generate_series(1, 20000) g;
CREATE FUNCTION sales.total(cid int) RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT coalesce(sum(amount), 0) FROM sales.orders WHERE customer_id = cid $$;
CREATE VIEW sales.big_customers AS SELECT id, sales.total(id) AS total FROM sales.customers WHERE sales.total(id) > 2000;
CREATE FUNCTION public.audit_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.audit (what) VALUES (TG_OP || ' ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER events_audit AFTER INSERT ON public.events FOR EACH ROW EXECUTE FUNCTION public.audit_event();
INSERT INTO public.events VALUES (20001, '{"after": "trigger"}', 'audited');
SELECT lo_from_bytea(0, convert_to(repeat('large object ', 20000), 'UTF8'));
SELECT lo_from_bytea(0, decode(md5('x'), 'hex'));
`;

/** What must survive a dump and restore: row counts, large objects, a function's and a view's results. */
const fingerprintQuery = `
SELECT (SELECT count(*) FROM sales.customers), (SELECT count(*) FROM sales.orders), (SELECT count(*) FROM public.events),
       (SELECT count(*) FROM public.audit), (SELECT count(*) FROM pg_largeobject_metadata),
       (SELECT md5(string_agg(md5(lo_get(oid)), ',' ORDER BY oid)) FROM pg_largeobject_metadata),
       sales.total(7), (SELECT count(*) FROM sales.big_customers),
       (SELECT md5(string_agg(payload::text, ',' ORDER BY id)) FROM public.events)`;

/** pg_dump --schema-only without the per-run random \\restrict key lines. */
function schemaOf(cluster: Cluster, database: string): string {
  const r = tool('pg_dump', ['--schema-only', '-d', database], cluster.env());
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .toString()
    .split('\n')
    .filter((l) => !/^\\(un)?restrict /.test(l))
    .join('\n');
}

describe('dump-push, dump-list, dump-fetch on PostgreSQL 15', { concurrency: false, timeout: 600_000 }, () => {
  let cluster: Cluster;
  let work: string;
  let repo: string;
  let env: Record<string, string>;

  const listed = async (e = env) => JSON.parse(ok(await walship(['dump-list', '--json'], e), 'dump-list').stdout.toString()) as Array<Record<string, any>>;
  const objectsUnder = async (dir: string): Promise<string[]> => {
    const out: string[] = [];
    const walk = async (d: string, prefix: string) => {
      for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
        if (e.isDirectory()) await walk(join(d, e.name), `${prefix}${e.name}/`);
        else out.push(`${prefix}${e.name}`);
      }
    };
    await walk(dir, '');
    return out.sort();
  };

  before(async () => {
    cluster = await startCluster({ major: 15 });
    await cluster.sql('CREATE DATABASE app');
    await cluster.sql(appSchema, { database: 'app' });
    work = await mkdtemp(join(tmpdir(), 'walship-dump-'));
    repo = join(work, 'repo');
    await mkdir(repo);
    env = { ...cluster.env(), WALSHIP_STORAGE: `file://${repo}` };
  });

  after(async () => {
    await cluster?.remove();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('dump one database, restore it into a new database: same schema, rows, large objects', async () => {
    const push = ok(await walship(['dump-push', '--dbname', 'app'], env), 'dump-push');
    const name = push.stdout.toString().trim();
    assert.match(name, /^dump_\d{8}T\d{6}Z_app$/);

    const [m] = await listed();
    assert.equal(m!.name, name);
    assert.equal(m!.kind, 'database');
    assert.equal(m!.database, 'app');
    assert.match(m!.serverVersion, /^15\.\d+/);
    assert.match(m!.pgDumpVersion, /^15\.\d+/);
    assert.equal(m!.codec.compression, 'zstd');
    assert.equal(m!.codec.encrypted, false);
    assert.ok(m!.size > 1_000_000 && m!.storedSize < m!.size, `size ${m!.size}, stored ${m!.storedSize}`);
    assert.ok(Date.parse(m!.started) <= Date.parse(m!.finished));
    assert.deepEqual(await objectsUnder(join(repo, 'dumps', name)), ['dump', 'manifest.json']);

    // The table view names it too.
    const table = ok(await walship(['dump-list'], env), 'dump-list').stdout.toString();
    assert.match(table, new RegExp(`^${name}\\s+app\\s`, 'm'));

    // Escape hatch: the stored object is a zstd frame of a pg_dump custom archive.
    if (haveZstd) {
      const raw = tool('/usr/bin/zstd', ['-dc', join(repo, 'dumps', name, 'dump')], {});
      assert.equal(raw.code, 0, raw.stderr);
      assert.equal(sha256(raw.stdout), m!.sha256);
      const list = tool('pg_restore', ['--list'], {}, raw.stdout);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout.toString(), /FUNCTION sales total/);
      assert.match(list.stdout.toString(), /BLOB/);
    }

    await cluster.sql('CREATE DATABASE app_copy');
    ok(await walship(['dump-fetch', 'LATEST', '--restore', '--dbname', 'app_copy'], env), 'dump-fetch --restore');
    assert.equal(schemaOf(cluster, 'app_copy'), schemaOf(cluster, 'app'));
    const expected = await cluster.sql(fingerprintQuery, { database: 'app' });
    assert.equal(await cluster.sql(fingerprintQuery, { database: 'app_copy' }), expected);
    assert.match(expected, /^2000\|40000\|20001\|1\|2\|/);

    // A second restore into the same, now non-empty, database is refused before pg_restore runs.
    const again = await walship(['dump-fetch', name, '--restore', '--dbname', 'app_copy'], env);
    assert.equal(again.code, 3, again.stderr);
    assert.match(again.stderr, /database app_copy is not empty/);
  });

  test('dump-fetch -o writes a verified file via temp + rename; -o - streams; existing files are not overwritten', async () => {
    const [m] = await listed();
    const out = join(work, 'fetched');
    await mkdir(out);
    const file = join(out, 'app.dump');
    ok(await walship(['dump-fetch', m!.name, '-o', file], env), 'dump-fetch -o');
    const bytes = await readFile(file);
    assert.equal(sha256(bytes), m!.sha256);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(out), ['app.dump'], 'no temp file left');
    const list = tool('pg_restore', ['--list', file], {});
    assert.equal(list.code, 0, list.stderr);

    const piped = ok(await walship(['dump-fetch', 'LATEST', '--source', 'app', '-o', '-'], env), 'dump-fetch -o -');
    assert.equal(sha256(piped.stdout), m!.sha256);

    const refused = await walship(['dump-fetch', m!.name, '-o', file], env);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /already exists/);
    assert.equal(sha256(await readFile(file)), m!.sha256);

    const missing = await walship(['dump-fetch', 'dump_20000101T000000Z_nope', '-o', join(out, 'x')], env);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /no complete dump named dump_20000101T000000Z_nope/);
    const usage = await walship(['dump-fetch', 'LATEST'], env);
    assert.equal(usage.code, 2);
  });

  test('--all: globals and every database under one name, fetched into a directory', async () => {
    await cluster.sql("CREATE ROLE reporter LOGIN; CREATE DATABASE crm OWNER reporter");
    await cluster.sql('CREATE TABLE notes (id int); INSERT INTO notes SELECT generate_series(1, 10)', { database: 'crm' });
    const name = ok(await walship(['dump-push', '--all'], env), 'dump-push --all').stdout.toString().trim();
    assert.match(name, /^dumpall_\d{8}T\d{6}Z$/);
    const m = (await listed()).find((d) => d.name === name)!;
    assert.equal(m.kind, 'cluster');
    assert.deepEqual(
      m.files.map((f: any) => [f.kind, f.database ?? null]),
      [['globals', null], ['database', 'app'], ['database', 'app_copy'], ['database', 'crm'], ['database', 'postgres']],
    );

    const dir = join(work, 'cluster');
    ok(await walship(['dump-fetch', name, '-o', dir], env), 'dump-fetch cluster -o DIR');
    assert.deepEqual((await readdir(dir)).sort(), ['app.dump', 'app_copy.dump', 'crm.dump', 'globals.sql', 'postgres.dump']);
    assert.match(await readFile(join(dir, 'globals.sql'), 'utf8'), /CREATE ROLE reporter;/);
    assert.equal(tool('pg_restore', ['--list', join(dir, 'crm.dump')], {}).code, 0);

    // LATEST of a database is the newest dump holding it, whichever kind; a member restores on its own.
    await cluster.sql('CREATE DATABASE crm_copy');
    ok(await walship(['dump-fetch', 'LATEST', '--source', 'crm', '--restore', '--dbname', 'crm_copy', '--', '--no-owner'], env), 'restore member');
    assert.equal(await cluster.sql('SELECT count(*) FROM notes', { database: 'crm_copy' }), '10');
    const noPick = await walship(['dump-fetch', name, '--restore', '--dbname', 'crm_copy'], env);
    assert.equal(noPick.code, 2);
    assert.match(noPick.stderr, /pick its database with --source/);
    const globals = ok(await walship(['dump-fetch', name, '--globals', '-o', '-'], env), 'globals to stdout');
    assert.match(globals.stdout.toString(), /CREATE ROLE reporter;/);
  });

  test('a missing database: exit 6 with pg_dump\'s message on one line, nothing listed or stored', async () => {
    const before = await objectsUnder(repo);
    const r = await walship(['dump-push', '--dbname', 'no_such_db'], env);
    assert.equal(r.code, 6, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /pg_dump: error: .*database "no_such_db" does not exist/);
    assert.equal(r.stdout.length, 0);
    assert.deepEqual(await objectsUnder(repo), before);
  });

  test('a wrong password: exit 6, the password never printed', async () => {
    await cluster.sql("CREATE ROLE dumper LOGIN PASSWORD 'right-secret' SUPERUSER");
    const hba = join(cluster.dataDir, 'pg_hba.conf');
    await writeFile(hba, `host all dumper 127.0.0.1/32 scram-sha-256\n${await readFile(hba, 'utf8')}`);
    await cluster.sql('SELECT pg_reload_conf()');
    const tcp = { ...env, PGHOST: '127.0.0.1', PGUSER: 'dumper' };
    const before = await objectsUnder(repo);
    const wrong = await walship(['dump-push', '--dbname', 'app'], { ...tcp, PGPASSWORD: 'wrong-secret' });
    assert.equal(wrong.code, 6, wrong.stderr);
    assert.match(wrong.stderr, /password authentication failed for user "dumper"/);
    assert.doesNotMatch(wrong.stderr, /wrong-secret/);
    const none = await walship(['dump-push', '--dbname', 'app'], tcp);
    assert.equal(none.code, 6, none.stderr);
    assert.match(none.stderr, /no password supplied/);
    assert.deepEqual(await objectsUnder(repo), before);
    // and the right one works (through the config file's pgpassword as well as PGPASSWORD)
    const config = join(work, 'walship.json');
    await writeFile(config, JSON.stringify({ pgpassword: 'right-secret' }), { mode: 0o600 });
    const right = ok(await walship(['dump-push', '--dbname', 'crm'], { ...tcp, WALSHIP_CONFIG: config }), 'dump-push with the right password');
    assert.match(right.stdout.toString(), /_crm\n$/);
  });

  test('pg_dump dying mid-stream: the partial object is removed, exit 6, nothing listed', async () => {
    // A pg_dump that streams the real archive's first 200 kB, then fails.
    const bin = join(work, 'fake-bin');
    await mkdir(bin);
    await writeFile(
      join(bin, 'pg_dump'),
      `#!/bin/sh\n${clientBin('pg_dump')} "$@" | head -c 200000\necho "pg_dump: error: simulated failure while dumping table events" >&2\nexit 1\n`,
    );
    await chmod(join(bin, 'pg_dump'), 0o755);
    const before = await objectsUnder(repo);
    const count = (await listed()).length;
    const r = await walship(['dump-push', '--dbname', 'app'], { ...env, WALSHIP_PG_BIN_DIR: bin });
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stderr, /pg_dump failed \(exit 1\): pg_dump: error: simulated failure while dumping table events/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.deepEqual(await objectsUnder(repo), before);
    assert.equal((await listed()).length, count);
  });

  test('disk full on fetch: exit 2 with a clear message, no partial file', { skip: !isRoot && 'mounting a tmpfs needs root' }, async (t) => {
    const dir = join(work, 'tiny');
    await mkdir(dir);
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
    if (mount.status !== 0) return t.skip(`cannot mount a tmpfs here: ${mount.stderr.toString().trim()}`);
    try {
      const r = await walship(['dump-fetch', 'LATEST', '--source', 'app', '-o', join(dir, 'app.dump')], env);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /cannot write .*app\.dump: no space left on device/);
      assert.deepEqual(await readdir(dir), []);
    } finally {
      spawnSync('umount', [dir]);
    }
  });

  test('delete retain 1 --dumps: a dry run first, then the newest dump of every database and of --all stays', async () => {
    ok(await walship(['dump-push', '--dbname', 'app'], env), 'a second dump of app');
    const before = await listed();
    const series = new Set(before.map((m) => (m.kind === 'cluster' ? '--all' : m.database)));
    assert.ok(before.length > series.size, 'there is something to delete');
    const dry = ok(await walship(['delete', 'retain', '1', '--dumps'], env), 'delete --dumps dry run').stdout.toString();
    assert.match(dry, /dry run/);
    assert.equal((await listed()).length, before.length);
    ok(await walship(['delete', 'retain', '1', '--dumps', '--confirm'], env), 'delete --dumps --confirm');
    const after = await listed();
    assert.equal(after.length, series.size);
    for (const key of series) {
      const newest = before.filter((m) => (m.kind === 'cluster' ? '--all' : m.database) === key).at(-1)!;
      assert.ok(after.some((m) => m.name === newest.name), `newest of ${key} kept`);
    }
    // (a failed put may leave an empty directory behind in a file:// repository: not an object, never listed)
    const left = [...new Set((await objectsUnder(join(repo, 'dumps'))).map((key) => key.split('/')[0]!))].sort();
    assert.deepEqual(left, after.map((m) => m.name).sort(), 'deleted dumps leave no objects');
  });

  test('an encrypted dump: age -d -i key, then pg_restore --list; dump-fetch needs the identity', { skip: !haveAge && 'the age CLI is not installed' }, async (t) => {
    const { encryptionFromConfig } = await import('../../src/codec/keys.ts');
    const keyFile = join(work, 'key.txt');
    assert.equal(spawnSync('/usr/bin/age-keygen', ['-o', keyFile]).status, 0);
    const recipient = spawnSync('/usr/bin/age-keygen', ['-y', keyFile]).stdout.toString().trim();
    const { loadConfig } = await import('../../src/config/load.ts');
    const probe = await encryptionFromConfig(loadConfig({ env: { WALSHIP_RECIPIENTS: recipient } })).catch(() => undefined);
    if (!probe?.encrypt) return t.skip('src/codec/keys.ts does not encrypt yet (encryptionFromConfig returned no encrypt stage)');

    const encRepo = join(work, 'encrypted');
    const push = { ...env, WALSHIP_STORAGE: `file://${encRepo}`, WALSHIP_RECIPIENTS: recipient };
    const read = { ...env, WALSHIP_STORAGE: `file://${encRepo}`, WALSHIP_IDENTITY_FILE: keyFile };
    // A repository that WAL archiving has claimed (walship.json) learns that it is encrypted now.
    await mkdir(encRepo);
    await writeFile(join(encRepo, 'walship.json'), JSON.stringify({ format: 1, systemIdentifier: '7000000000000000001', created: new Date().toISOString() }));
    const name = ok(await walship(['dump-push', '--dbname', 'app'], push), 'encrypted dump-push').stdout.toString().trim();
    assert.ok(JSON.parse(await readFile(join(encRepo, 'walship.json'), 'utf8')).encryption, 'walship.json records the encryption');
    const plain = await walship(['dump-push', '--dbname', 'app'], { ...env, WALSHIP_STORAGE: `file://${encRepo}` });
    assert.equal(plain.code, 3, plain.stderr);
    assert.match(plain.stderr, /refusing to store unencrypted objects/);
    const object = join(encRepo, 'dumps', name, 'dump');
    assert.ok((await readFile(object)).subarray(0, 22).equals(Buffer.from('age-encryption.org/v1\n')), 'the stored dump is an age file');
    assert.ok((await readFile(join(encRepo, 'dumps', name, 'manifest.json'))).subarray(0, 22).equals(Buffer.from('age-encryption.org/v1\n')), 'so is its manifest');

    const decrypted = tool('/usr/bin/age', ['-d', '-i', keyFile, object], {});
    assert.equal(decrypted.code, 0, decrypted.stderr);
    const raw = haveZstd ? tool('/usr/bin/zstd', ['-dc'], {}, decrypted.stdout) : undefined;
    if (raw) {
      assert.equal(raw.code, 0, raw.stderr);
      const list = tool('pg_restore', ['--list'], {}, raw.stdout);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout.toString(), /TABLE public events/);
    }

    const [m] = await listed(read);
    assert.equal(m!.name, name);
    assert.equal(m!.codec.encrypted, true);
    const noKey = await walship(['dump-list'], { ...env, WALSHIP_STORAGE: `file://${encRepo}` });
    assert.equal(noKey.code, 4, noKey.stderr);
    assert.match(noKey.stderr, /WALSHIP_IDENTITY_FILE/);

    await cluster.sql('CREATE DATABASE app_from_encrypted');
    ok(await walship(['dump-fetch', name, '--restore', '--dbname', 'app_from_encrypted'], read), 'encrypted restore');
    assert.equal(await cluster.sql(fingerprintQuery, { database: 'app_from_encrypted' }), await cluster.sql(fingerprintQuery, { database: 'app' }));
  });
});
