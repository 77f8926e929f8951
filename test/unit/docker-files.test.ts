/**
 * docker/ checked without a Docker engine: compose.yaml parses (with the small YAML subset reader
 * below; the file keeps to that subset: block maps and lists, flow lists of scalars, quoted and
 * plain scalars, comments) and what it references exists; the Dockerfile's stages, COPY sources,
 * npm scripts and rebuilt packages match the repository; every WALSHIP_* variable the files set is
 * a real setting (walship refuses unknown ones with exit 2); the scripts are executable.
 */
import assert from 'node:assert/strict';
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { settings } from '../../src/config/settings.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const docker = join(root, 'docker');
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; dependencies: Record<string, string>; bin: Record<string, string>; type: string };

// ---------------------------------------------------------------------------------------------
// A YAML subset reader: enough for compose files written plainly, strict about everything else.
// ---------------------------------------------------------------------------------------------

type Yaml = string | Yaml[] | { [key: string]: Yaml } | null;

interface Line {
  indent: number;
  text: string;
  no: number;
}

export function parseYamlSubset(source: string): Yaml {
  const lines: Line[] = [];
  source.split('\n').forEach((raw, i) => {
    if (/\t/.test(raw.match(/^\s*/)![0])) throw new Error(`line ${i + 1}: tab in indentation`);
    const text = stripComment(raw).trimEnd();
    if (text.trim() === '') return;
    lines.push({ indent: text.length - text.trimStart().length, text: text.trim(), no: i + 1 });
  });
  let at = 0;

  function block(indent: number): Yaml {
    const first = lines[at];
    if (!first || first.indent < indent) return null;
    return first.text.startsWith('- ') || first.text === '-' ? list(first.indent) : map(first.indent);
  }

  function list(indent: number): Yaml[] {
    const out: Yaml[] = [];
    while (at < lines.length && lines[at]!.indent === indent && (lines[at]!.text.startsWith('- ') || lines[at]!.text === '-')) {
      const line = lines[at]!;
      const rest = line.text.slice(1).trim();
      if (rest === '') {
        at++;
        out.push(block(indent + 1));
      } else if (/^[A-Za-z0-9_.-]+:(\s|$)/.test(rest)) {
        // "- key: value" starts a map whose keys sit at indent + 2
        lines[at] = { indent: indent + 2, text: rest, no: line.no };
        out.push(map(indent + 2));
      } else {
        at++;
        out.push(scalarOrFlow(rest, line.no));
      }
    }
    if (at < lines.length && lines[at]!.indent > indent) throw new Error(`line ${lines[at]!.no}: unexpected indentation`);
    return out;
  }

  function map(indent: number): { [key: string]: Yaml } {
    const out: { [key: string]: Yaml } = {};
    while (at < lines.length && lines[at]!.indent === indent) {
      const line = lines[at]!;
      const m = /^("[^"]*"|'[^']*'|[^\s:][^:]*?):(?:\s+(.*))?$/.exec(line.text);
      if (!m) throw new Error(`line ${line.no}: expected "key: value", got ${JSON.stringify(line.text)}`);
      const key = unquote(m[1]!);
      if (key in out) throw new Error(`line ${line.no}: duplicate key ${key}`);
      at++;
      const value = m[2]?.trim();
      if (value === undefined || value === '') {
        const next = lines[at];
        // a list may sit at the same indent as its key (compose files often do this)
        out[key] = next && (next.indent > indent || (next.indent === indent && next.text.startsWith('- '))) ? block(next.indent) : null;
      } else if (/^[|>][+-]?$/.test(value)) {
        const parts: string[] = [];
        while (at < lines.length && lines[at]!.indent > indent) parts.push(lines[at++]!.text);
        out[key] = value.startsWith('|') ? `${parts.join('\n')}\n` : `${parts.join(' ')}\n`;
      } else {
        if (/^[&*!]/.test(value)) throw new Error(`line ${line.no}: anchors, aliases and tags are outside the subset`);
        out[key] = scalarOrFlow(value, line.no);
      }
    }
    if (at < lines.length && lines[at]!.indent > indent) throw new Error(`line ${lines[at]!.no}: unexpected indentation`);
    return out;
  }

  const doc = block(0);
  if (at !== lines.length) throw new Error(`line ${lines[at]!.no}: unexpected content`);
  return doc;
}

function stripComment(raw: string): string {
  let quote = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(raw[i - 1]!))) return raw.slice(0, i);
  }
  return raw;
}

function scalarOrFlow(text: string, no: number): Yaml {
  if (text.startsWith('[')) {
    if (!text.endsWith(']')) throw new Error(`line ${no}: unterminated flow list`);
    const inner = text.slice(1, -1).trim();
    if (!inner) return [];
    const items: string[] = [];
    const re = /\s*("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^,\[\]{}"']+)\s*(,|$)/y;
    let m: RegExpExecArray | null;
    while (re.lastIndex < inner.length && (m = re.exec(inner))) items.push(unquote(m[1]!.trim()));
    if (re.lastIndex < inner.length) throw new Error(`line ${no}: flow list outside the subset: ${text}`);
    return items;
  }
  if (text.startsWith('{')) throw new Error(`line ${no}: flow maps are outside the subset`);
  return unquote(text);
}

function unquote(text: string): string {
  if (text.startsWith('"')) {
    if (!text.endsWith('"') || text.length < 2) throw new Error(`unterminated string ${text}`);
    return JSON.parse(text) as string;
  }
  if (text.startsWith("'")) {
    if (!text.endsWith("'") || text.length < 2) throw new Error(`unterminated string ${text}`);
    return text.slice(1, -1).replace(/''/g, "'");
  }
  return text;
}

// ---------------------------------------------------------------------------------------------

const asMap = (v: Yaml | undefined, what: string): { [key: string]: Yaml } => {
  assert.ok(v && typeof v === 'object' && !Array.isArray(v), `${what} is a map`);
  return v as { [key: string]: Yaml };
};
const asList = (v: Yaml | undefined): Yaml[] => (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]);

/** Dockerfile instructions with line continuations joined. */
function dockerfileInstructions(text: string): { op: string; args: string }[] {
  const joined = text.replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op!.toUpperCase(), args: rest.join(' ') };
    });
}

function envFile(path: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(t);
    assert.ok(m, `${path}: not NAME=value: ${t}`);
    vars.set(m[1]!, m[2]!);
  }
  return vars;
}

const knownEnv = new Set(Object.values(settings).map((s) => s.env));
const checkWalshipVars = (names: Iterable<string>, where: string) => {
  for (const name of names) {
    if (name.startsWith('WALSHIP_') && name !== 'WALSHIP_CONFIG') assert.ok(knownEnv.has(name), `${where}: ${name} is not a walship setting (walship would exit 2)`);
  }
};

describe('YAML subset reader', () => {
  test('reads maps, lists, flow lists, quotes, comments and block scalars', () => {
    const doc = parseYamlSubset(`# top
a: 1   # trailing
b:
  - x
  - "y # not a comment"
  - k: v
    l: w
c: [one, "two, three", 'fo''ur']
d:
- same-indent list
e: |
  line 1
  line 2
f:
`);
    assert.deepEqual(doc, {
      a: '1',
      b: ['x', 'y # not a comment', { k: 'v', l: 'w' }],
      c: ['one', 'two, three', "fo'ur"],
      d: ['same-indent list'],
      e: 'line 1\nline 2\n',
      f: null,
    });
  });

  test('rejects what it does not understand instead of misreading it', () => {
    assert.throws(() => parseYamlSubset('a: 1\n  b: 2\n'), /unexpected indentation/);
    assert.throws(() => parseYamlSubset('a: 1\na: 2\n'), /duplicate key/);
    assert.throws(() => parseYamlSubset('a: &x 1\n'), /anchors/);
    assert.throws(() => parseYamlSubset('a: {b: 1}\n'), /flow maps/);
    assert.throws(() => parseYamlSubset('\ta: 1\n'), /tab/);
    assert.throws(() => parseYamlSubset('just text\n'), /expected "key: value"/);
  });
});

describe('docker/', () => {
  const compose = asMap(parseYamlSubset(readFileSync(join(docker, 'compose.yaml'), 'utf8')), 'compose.yaml');
  const services = asMap(compose.services, 'services');
  const dockerfile = dockerfileInstructions(readFileSync(join(docker, 'Dockerfile'), 'utf8'));
  const stages = dockerfile.filter((i) => i.op === 'FROM').map((i) => /\bAS\s+(\S+)/i.exec(i.args)?.[1]);

  test('compose.yaml: services, images, builds, volumes, dependencies and env files all resolve', () => {
    assert.deepEqual(Object.keys(services).sort(), ['backup', 'minio', 'minio-setup', 'postgres', 'walship']);
    const volumes = Object.keys(asMap(compose.volumes, 'volumes'));
    for (const [name, raw] of Object.entries(services)) {
      const s = asMap(raw, `service ${name}`);
      assert.ok(s.image || s.build, `${name}: image or build`);
      if (s.build) {
        const b = asMap(s.build, `${name}.build`);
        const context = join(docker, b.context as string);
        assert.ok(existsSync(join(context, b.dockerfile as string)), `${name}: ${b.dockerfile} exists in ${b.context}`);
        assert.ok(stages.includes(b.target as string), `${name}: target ${b.target} is a Dockerfile stage (${stages.join(', ')})`);
      }
      for (const v of asList(s.volumes)) {
        const source = (v as string).split(':')[0]!;
        if (!source.startsWith('.') && !source.startsWith('/')) assert.ok(volumes.includes(source), `${name}: volume ${source} is declared`);
      }
      const deps = s.depends_on ? (Array.isArray(s.depends_on) ? (s.depends_on as string[]) : Object.keys(asMap(s.depends_on, 'depends_on'))) : [];
      for (const d of deps) assert.ok(d in services, `${name}: depends on a service ${d}`);
      for (const f of asList(s.env_file)) {
        assert.ok(existsSync(join(docker, f as string)), `${name}: env_file ${f} exists`);
        checkWalshipVars(envFile(join(docker, f as string)).keys(), `docker/${f}`);
      }
      if (s.environment) checkWalshipVars(Object.keys(asMap(s.environment, 'environment')), `service ${name}`);
    }
  });

  test('compose.yaml: PostgreSQL 17 archives through walship into MinIO over S3 path-style; backups are scheduled', () => {
    const pg = asMap(services.postgres, 'postgres');
    const command = (pg.command as string[]).join(' ');
    assert.match(command, /archive_mode=on/);
    assert.match(command, /archive_command=walship wal-push %p/);
    const env = envFile(join(docker, 'walship.env'));
    const storage = new URL(env.get('WALSHIP_STORAGE')!);
    assert.equal(storage.protocol, 's3:');
    assert.equal(storage.searchParams.get('endpoint'), 'http://minio:9000');
    assert.equal(storage.searchParams.get('pathStyle'), 'true');
    assert.equal(env.get('AWS_ACCESS_KEY_ID'), (asMap(asMap(services.minio, 'minio').environment, 'env').MINIO_ROOT_USER as string));
    assert.equal(env.get('AWS_SECRET_ACCESS_KEY'), (asMap(asMap(services.minio, 'minio').environment, 'env').MINIO_ROOT_PASSWORD as string));
    assert.match(asList(asMap(services['minio-setup'], 'minio-setup').entrypoint).join(' '), new RegExp(`mc mb --ignore-existing local/${storage.hostname}`));
    assert.match(readFileSync(join(docker, 'Dockerfile'), 'utf8'), /FROM postgres:\$\{PG_MAJOR\}-bookworm AS postgres/);
    assert.match(readFileSync(join(docker, 'Dockerfile'), 'utf8'), /ARG PG_MAJOR=17/);
    const backup = asMap(services.backup, 'backup');
    assert.deepEqual(backup.entrypoint, ['walship-backup-loop']);
    assert.deepEqual(backup.volumes, pg.volumes, 'backup-push reads the same data directory at the same path');
    assert.equal(asMap(backup.environment, 'env').PGDATA, asMap(pg.environment, 'env').PGDATA);
    assert.match(readFileSync(join(docker, 'backup-loop.sh'), 'utf8'), /walship backup-push/);
  });

  test('Dockerfile: stages, COPY sources, npm scripts and packages match the repository', () => {
    assert.ok(stages.includes('build') && stages.includes('postgres') && stages.includes('walship'));
    assert.equal(stages.at(-1), 'walship', 'the CLI image is the default (last) stage');
    const defined: string[] = [];
    for (const { op, args } of dockerfile) {
      if (op === 'FROM') {
        const base = args.split(/\s+/)[0]!;
        if (!base.includes(':') && !base.includes('$')) assert.ok(defined.includes(base), `FROM ${base}: an earlier stage`);
        defined.push(/\bAS\s+(\S+)/i.exec(args)?.[1] ?? '');
      }
      if (op === 'COPY') {
        const from = /--from=(\S+)/.exec(args)?.[1];
        const paths = args.replace(/--\S+/g, '').trim().split(/\s+/);
        if (from) {
          assert.ok(defined.includes(from), `COPY --from=${from}: an earlier stage`);
        } else {
          for (const src of paths.slice(0, -1)) assert.ok(existsSync(join(root, src)), `COPY ${src}: exists in the repository`);
        }
      }
      if (op === 'RUN') {
        for (const m of args.matchAll(/npm run (\S+)/g)) assert.ok(pkg.scripts[m[1]!], `npm run ${m[1]}: a package.json script`);
        for (const m of args.matchAll(/npm rebuild ([^&;|]+)/g)) {
          for (const name of m[1]!.trim().split(/\s+/)) assert.ok(pkg.dependencies[name], `npm rebuild ${name}: a dependency`);
        }
      }
    }
    // What the runtime copies from the build stage is what the launcher loads.
    const text = readFileSync(join(docker, 'Dockerfile'), 'utf8');
    assert.match(text, /ln -s \/opt\/walship\/bin\/walship \/usr\/local\/bin\/walship/);
    assert.equal(pkg.bin.walship, 'bin/walship');
    assert.ok(statSync(join(root, 'bin/walship')).mode & 0o111, 'bin/walship is executable');
    assert.match(read('bin/launch.mjs'), /\.\.\/dist\/cli\.js/);
    assert.match(read('scripts/build.ts'), /new URL\('\.\.\/dist', import\.meta\.url\)/);
    assert.equal(pkg.type, 'module', 'dist/cli.js loads as ESM through package.json, which the image keeps');
    assert.match(text, /COPY package\.json package-lock\.json/);
  });

  test('Dockerfile.dockerignore lets in exactly what the build copies', () => {
    const ignore = readFileSync(join(docker, 'Dockerfile.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    assert.equal(ignore[0], '**');
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1));
    const copied = dockerfile
      .filter((i) => i.op === 'COPY' && !i.args.includes('--from'))
      .flatMap((i) => i.args.trim().split(/\s+/).slice(0, -1));
    for (const src of copied) assert.ok(allowed.includes(src.replace(/\/$/, '')), `${src} is let into the build context`);
  });

  test('scripts are executable shell scripts', () => {
    for (const script of ['backup-loop.sh']) {
      const path = join(docker, script);
      accessSync(path, constants.X_OK);
      assert.match(readFileSync(path, 'utf8'), /^#!\/bin\/sh\n/);
    }
  });

  test('docker/README.md walks through compose up, a backup and a PITR restore', () => {
    const readme = readFileSync(join(docker, 'README.md'), 'utf8');
    assert.match(readme, /docker compose up -d --build/);
    assert.match(readme, /walship backup-push/);
    assert.match(readme, /walship restore "\$PGDATA" --target-time/);
    for (const m of readme.matchAll(/\[[^\]]+\]\(([^)#:]+)\)/g)) assert.ok(existsSync(join(docker, m[1]!)), `README link ${m[1]} exists`);
  });
});
