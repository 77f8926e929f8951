/**
 * Settings (DESIGN §7): one JSON file plus WALSHIP_* environment variables, which win. Anything
 * wrong is one usage error (exit 2) that names the setting, and never shows a password.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfig, requireStorage } from '../../src/config/load.ts';
import { settings } from '../../src/config/settings.ts';
import { parseStorageUrl } from '../../src/config/storage-url.ts';
import { ExitCode, WalshipError } from '../../src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'walship-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** A config file with this exact text. */
function configFile(text: string | object): string {
  const path = join(dir, `walship-${++files}.json`);
  writeFileSync(path, typeof text === 'string' ? text : JSON.stringify(text));
  return path;
}

/** Load with exactly this environment (never the test runner's own). */
const load = (env: Record<string, string>, configPath?: string) => loadConfig({ env, ...(configPath ? { configPath } : {}) });

/** Loading must fail with exit 2 and a single line matching every pattern. */
function assertUsageError(run: () => unknown, ...patterns: RegExp[]): string {
  let message = '';
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof WalshipError, String(err));
    assert.equal(err.exitCode, ExitCode.usage);
    assert.doesNotMatch(err.message, /\n/);
    for (const pattern of patterns) assert.match(err.message, pattern);
    message = err.message;
    return true;
  });
  return message;
}

describe('loading settings', () => {
  test('defaults when nothing is set', () => {
    const config = load({ WALSHIP_CONFIG: configFile({}) });
    assert.equal(config.storage, undefined);
    assert.equal(config.compression, 'zstd');
    assert.equal(config.compressionLevel, undefined);
    assert.equal(config.uploadConcurrency, 2);
    assert.equal(config.downloadConcurrency, 2);
    assert.equal(config.storageTimeout, 300);
    assert.equal(config.logFormat, 'text');
    assert.equal(config.logLevel, 'info');
  });

  test('the file gives every setting; numbers and lists come out typed', () => {
    const path = configFile({
      storage: 'file:///var/backups/pg',
      compression: 'lz4',
      compressionLevel: 3,
      recipients: ['age1abc', 'age1def'],
      uploadConcurrency: 8,
      storageTimeout: 2.5,
      logFormat: 'json',
      pgport: 5433,
    });
    const config = load({}, path);
    assert.equal(config.storage, 'file:///var/backups/pg');
    assert.equal(config.compression, 'lz4');
    assert.equal(config.compressionLevel, 3);
    assert.deepEqual(config.recipients, ['age1abc', 'age1def']);
    assert.equal(config.uploadConcurrency, 8);
    assert.equal(config.storageTimeout, 2.5);
    assert.equal(config.logFormat, 'json');
    assert.equal(config.pgport, 5433);
    assert.equal(config.configPath, path);
  });

  test('environment variables win over the file, and are parsed like it', () => {
    const path = configFile({ storage: 'file:///from-file', compression: 'lz4', compressionLevel: 3, uploadConcurrency: 4 });
    const config = load({
      WALSHIP_CONFIG: path,
      WALSHIP_STORAGE: 'file:///from-env',
      WALSHIP_COMPRESSION: 'none',
      WALSHIP_COMPRESSION_LEVEL: '7',
      WALSHIP_RECIPIENTS: ' age1abc, age1def ,',
      PGPORT: '6543',
    });
    assert.equal(config.storage, 'file:///from-env');
    assert.equal(config.compression, 'none');
    assert.equal(config.compressionLevel, 7);
    assert.equal(config.uploadConcurrency, 4); // not in the environment: the file's value
    assert.deepEqual(config.recipients, ['age1abc', 'age1def']);
    assert.equal(config.pgport, 6543);
  });

  test('--config wins over WALSHIP_CONFIG; command-line overrides win over everything', () => {
    const fromEnv = configFile({ compression: 'lz4' });
    const fromFlag = configFile({ compression: 'none', logLevel: 'debug' });
    assert.equal(load({ WALSHIP_CONFIG: fromEnv }, fromFlag).compression, 'none');
    const config = loadConfig({ env: { WALSHIP_CONFIG: fromEnv, WALSHIP_LOG_LEVEL: 'warn' }, overrides: { logLevel: 'error' } });
    assert.equal(config.logLevel, 'error');
  });

  test('an empty environment variable counts as unset', () => {
    const config = load({ WALSHIP_COMPRESSION: '', WALSHIP_CONFIG: configFile({ compression: 'lz4' }) });
    assert.equal(config.compression, 'lz4');
  });
});

describe('bad settings: exit 2, one line naming the setting', () => {
  test('a config file that is not JSON', () => {
    const path = configFile('{"storage": "file:///x",, }');
    assertUsageError(() => load({}, path), new RegExp(`config file ${path}`), /not valid JSON/);
    assertUsageError(() => load({}, configFile('')), /not valid JSON/);
    assertUsageError(() => load({}, configFile('storage = "file:///x"')), /not valid JSON/);
  });

  test('a config file that is JSON but not an object of settings', () => {
    for (const text of ['[]', '"file:///x"', 'null', '42']) assertUsageError(() => load({}, configFile(text)), /expected a JSON object of settings/);
  });

  test('a config file given explicitly that does not exist or is a directory', () => {
    assertUsageError(() => load({}, join(dir, 'missing.json')), /missing\.json/, /ENOENT/);
    assertUsageError(() => load({ WALSHIP_CONFIG: join(dir, 'missing.json') }), /missing\.json/);
    assertUsageError(() => load({}, dir), /cannot read it/);
  });

  test('an unknown key in the file', () => {
    assertUsageError(() => load({}, configFile({ storage: 'file:///x', compresion: 'lz4' })), /unknown setting 'compresion'/);
  });

  test('an unknown WALSHIP_ environment variable', () => {
    assertUsageError(() => load({ WALSHIP_COMPRESION: 'lz4' }), /WALSHIP_COMPRESION/, /unknown environment variable/);
    // Other variables are none of walship's business.
    assert.equal(load({ WALSHIPX: '1', PGAPPNAME: 'x', HOME: '/root' }).compression, 'zstd');
  });

  test('a value outside an enumeration, from the environment or the file', () => {
    assertUsageError(() => load({ WALSHIP_COMPRESSION: 'brotli' }), /WALSHIP_COMPRESSION/, /zstd, lz4, none/, /'brotli'/);
    const path = configFile({ compression: 'gzip' });
    assertUsageError(() => load({}, path), new RegExp(`${path}: compression`), /zstd, lz4, none/);
    assertUsageError(() => load({ WALSHIP_LOG_FORMAT: 'xml' }), /WALSHIP_LOG_FORMAT/, /text, json/);
    assertUsageError(() => load({ WALSHIP_LOG_LEVEL: 'verbose' }), /WALSHIP_LOG_LEVEL/);
  });

  test('a bad number', () => {
    assertUsageError(() => load({ WALSHIP_COMPRESSION_LEVEL: 'fast' }), /WALSHIP_COMPRESSION_LEVEL/, /a number/, /'fast'/);
    assertUsageError(() => load({ WALSHIP_COMPRESSION_LEVEL: '99' }), /WALSHIP_COMPRESSION_LEVEL/, /at most 22/);
    assertUsageError(() => load({ WALSHIP_UPLOAD_CONCURRENCY: '0' }), /WALSHIP_UPLOAD_CONCURRENCY/, /at least 1/);
    assertUsageError(() => load({ WALSHIP_DOWNLOAD_CONCURRENCY: '2.5' }), /WALSHIP_DOWNLOAD_CONCURRENCY/);
    assertUsageError(() => load({ WALSHIP_STORAGE_TIMEOUT: '-1' }), /WALSHIP_STORAGE_TIMEOUT/);
    assertUsageError(() => load({ PGPORT: '70000' }), /PGPORT/);
    assertUsageError(() => load({}, configFile({ uploadConcurrency: 'many' })), /uploadConcurrency/, /a number/);
  });

  test('a value of the wrong type in the file', () => {
    assertUsageError(() => load({}, configFile({ storage: 42 })), /storage/, /a string/);
    assertUsageError(() => load({}, configFile({ storage: '' })), /storage/, /must not be empty/);
  });

  test('missing storage is reported when a command needs it', () => {
    const config = load({});
    assertUsageError(() => requireStorage(config), /storage \(WALSHIP_STORAGE\) is not set/);
    assert.equal(requireStorage(load({ WALSHIP_STORAGE: 'file:///x' })), 'file:///x');
  });
});

describe('PGPASSWORD is never echoed', () => {
  const secret = 'hunter2-Secret';
  test('not when another setting is wrong', () => {
    const message = assertUsageError(() => load({ PGPASSWORD: secret, WALSHIP_COMPRESSION: 'rar' }), /WALSHIP_COMPRESSION/);
    assert.ok(!message.includes(secret));
  });

  test('not when the password itself has the wrong type', () => {
    const message = assertUsageError(() => load({}, configFile({ pgpassword: 123456789 })), /pgpassword/);
    assert.ok(!message.includes('123456789'), message);
  });

  test('not when the file holding it is not valid JSON', () => {
    for (const text of [`pgpassword=${secret}`, `{"pgpassword": "${secret}" oops}`, `{"pgpassword": '${secret}'}`, `${secret}`, `{"storage":"file:///x"}\n${secret}`]) {
      const message = assertUsageError(() => load({}, configFile(text)), /not valid JSON/);
      assert.ok(!message.includes(secret.slice(0, 6)), message);
    }
  });

  test('but it is loaded', () => {
    assert.equal(load({ PGPASSWORD: secret }).pgpassword, secret);
  });
});

describe('the settings declaration', () => {
  test('every setting has a documented environment variable, and WALSHIP_ ones are named after their key', () => {
    for (const [key, setting] of Object.entries(settings)) {
      assert.ok(setting.doc.length > 5, key);
      if (setting.env.startsWith('WALSHIP_')) {
        assert.equal(setting.env, `WALSHIP_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`);
      } else {
        assert.equal(setting.env, key.toUpperCase());
      }
    }
  });
});

describe('storage URLs', () => {
  test('the four schemes', () => {
    assert.deepEqual(parseStorageUrl('file:///var/backups/pg/'), {
      scheme: 'file',
      path: '/var/backups/pg',
      bucket: '',
      prefix: '',
      options: {},
      display: 'file:///var/backups/pg/',
    });
    assert.equal(parseStorageUrl('file:///').path, '/');
    assert.equal(parseStorageUrl('file://localhost/srv/wal%20archive').path, '/srv/wal archive');
    const s3 = parseStorageUrl('s3://bucket/some/prefix/?region=eu-west-1&endpoint=http://127.0.0.1:9000&pathStyle=true');
    assert.equal(s3.scheme, 's3');
    assert.equal(s3.bucket, 'bucket');
    assert.equal(s3.prefix, 'some/prefix');
    assert.deepEqual(s3.options, { region: 'eu-west-1', endpoint: 'http://127.0.0.1:9000', pathStyle: 'true' });
    assert.doesNotMatch(s3.display, /region/);
    assert.deepEqual([parseStorageUrl('gs://b').scheme, parseStorageUrl('gs://b').prefix], ['gs', '']);
    assert.deepEqual([parseStorageUrl('azure://container/p').scheme, parseStorageUrl('azure://container/p').bucket], ['azure', 'container']);
  });

  test('bad URLs are usage errors naming the setting', () => {
    const bad = (text: string, pattern: RegExp) => {
      const message = assertUsageError(() => parseStorageUrl(text, 'setting storage (WALSHIP_STORAGE)'), /WALSHIP_STORAGE/, pattern);
      return message;
    };
    bad('/var/backups', /not a URL/);
    bad('ftp://host/x', /unsupported scheme 'ftp:'/);
    bad('file://server/share', /absolute path/);
    bad('s3:///prefix', /bucket/);
    const message = bad('s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/prefix', /credentials do not belong/);
    assert.ok(!message.includes('wJalrXUtnFEMI') && !message.includes('AKIAEXAMPLE'), message);
  });
});
