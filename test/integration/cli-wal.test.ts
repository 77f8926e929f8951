/**
 * wal-push and wal-fetch through the built CLI (`npm run build` first), as PostgreSQL runs them:
 * the PostgreSQL contract of DESIGN §2 and the exit codes of §7, with synthetic WAL files.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pkg from '../../package.json' with { type: 'json' };
import { sniff } from '../../src/codec/codec.ts';
import { settings } from '../../src/config/settings.ts';
import { ExitCode } from '../../src/errors.ts';
import { postgresUser, requireBuiltCli, runWalship, type RunOptions } from '../helpers/cli.ts';
import { makeBackupHistory, makeHistory, makeSegment, MiB, tempDir, writeWalFile, type WalSegment } from '../helpers/wal-files.ts';

requireBuiltCli();
const scratch = tempDir('cli-wal');
after(() => scratch.remove());
let dirs = 0;
/** A fresh directory under the scratch dir (owned by postgres when asked, so that user can write it). */
function dir(label: string, owner?: 'postgres'): string {
  const path = join(scratch.path, `${label}-${++dirs}`);
  mkdirSync(path, { recursive: true });
  if (owner) chownSync(path, postgresUser().uid, postgresUser().gid);
  return path;
}

/** Every file under `root`, recursively, relative to it (temp files included). */
function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1))
    .sort();
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

interface Repo {
  root: string;
  env: Record<string, string>;
  push(path: string, options?: RunOptions): ReturnType<typeof runWalship>;
  fetch(name: string, dest: string, flags?: string[], options?: RunOptions): ReturnType<typeof runWalship>;
  object(name: string): Buffer;
}

function repo(compression?: string, extraEnv: Record<string, string> = {}): Repo {
  const root = join(dir('repo'), 'archive');
  mkdirSync(root); // walship never creates the repository directory itself
  const env: Record<string, string> = { WALSHIP_STORAGE: `file://${root}`, ...(compression ? { WALSHIP_COMPRESSION: compression } : {}), ...extraEnv };
  return {
    root,
    env,
    push: (path, options = {}) => runWalship(['wal-push', path], { env, ...options }),
    fetch: (name, dest, flags = [], options = {}) => runWalship(['wal-fetch', ...flags, name, dest], { env, ...options }),
    object: (name) => readFileSync(join(root, 'wal', name)),
  };
}

/** Fetch `file.name` from `r` into a fresh pg_wal/RECOVERYXLOG and check the bytes and the directory. */
async function assertFetches(r: Repo, file: WalSegment): Promise<void> {
  const pgwal = dir('pg_wal');
  const dest = join(pgwal, 'RECOVERYXLOG');
  const result = await r.fetch(file.name, dest);
  assert.equal(result.code, 0, result.stderr);
  assert.ok(readFileSync(dest).equals(file.bytes), `${file.name}: fetched bytes differ`);
  assert.deepEqual(readdirSync(pgwal), ['RECOVERYXLOG']);
}

describe('help and version', { concurrency: true }, () => {
  test('walship --version and -V print the package version', async () => {
    for (const flag of ['--version', '-V']) {
      const result = await runWalship([flag]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim(), pkg.version);
    }
  });

  test('walship --help lists the commands, every WALSHIP_* variable of the settings declaration, and the exit codes', async () => {
    const result = await runWalship(['--help']);
    assert.equal(result.code, 0, result.stderr);
    for (const command of ['wal-push', 'wal-fetch']) assert.match(result.stdout, new RegExp(`\\b${command}\\b`));
    for (const [key, setting] of Object.entries(settings)) {
      assert.ok(result.stdout.includes(setting.env), `--help lacks ${setting.env} (${key})`);
    }
    assert.ok(Object.values(settings).filter((s) => s.env.startsWith('WALSHIP_')).length >= 10);
    assert.match(result.stdout, /WALSHIP_CONFIG/);
    for (const code of [0, 1, 2, 3, 4, 5, 6]) assert.match(result.stdout, new RegExp(`^\\s+${code}\\s+\\S`, 'm'));
  });

  test('wal-push --help and wal-fetch --help document arguments, flags and settings', async () => {
    const push = await runWalship(['wal-push', '--help']);
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stdout, /Usage: walship wal-push .*<path>/);
    assert.match(push.stdout, /%p/);
    for (const env of ['WALSHIP_STORAGE', 'WALSHIP_COMPRESSION', 'WALSHIP_COMPRESSION_LEVEL']) assert.ok(push.stdout.includes(env), env);
    const fetch = await runWalship(['wal-fetch', '--help']);
    assert.equal(fetch.code, 0, fetch.stderr);
    assert.match(fetch.stdout, /<name> <dest>/);
    assert.match(fetch.stdout, /--standby/);
    assert.match(fetch.stdout, /132/);
    assert.ok(fetch.stdout.includes('WALSHIP_STORAGE'));
  });

  test('usage mistakes exit 2', async () => {
    for (const args of [['wal-push'], ['wal-fetch', '000000010000000000000001'], ['no-such-command'], ['wal-push', '--no-such-flag', 'x']]) {
      const result = await runWalship(args, { env: { WALSHIP_STORAGE: `file://${scratch.path}/unused` } });
      assert.equal(result.code, ExitCode.usage, `${args.join(' ')}: ${result.stderr}`);
    }
    assert.ok(!existsSync(join(scratch.path, 'unused')));
  });
});

describe('wal-push then wal-fetch gives back the same bytes', { concurrency: 3 }, () => {
  for (const compression of ['zstd', 'lz4', 'none']) {
    for (const segmentSize of [1 * MiB, 64 * MiB]) {
      test(`${compression}, ${segmentSize / MiB} MiB segments`, async () => {
        const r = repo(compression);
        const pgwal = dir('src-pg_wal');
        const segNo = segmentSize === MiB ? 0x1234n : 0x41n; // several "logs" in: the name's middle part is not 0
        const seg = makeSegment({ segmentSize, segNo, timeline: 3 });
        const path = writeWalFile(pgwal, seg);
        const pushed = await r.push(path);
        assert.equal(pushed.code, 0, pushed.stderr);
        assert.equal(pushed.stdout, '');
        assert.equal(sniff(r.object(seg.name)), compression);
        if (compression !== 'none') assert.ok(r.object(seg.name).length < seg.bytes.length / 2);
        assert.deepEqual(filesUnder(r.root), ['wal/' + seg.name, 'walship.json'].sort());
        assert.ok(readFileSync(path).equals(seg.bytes), 'wal-push must not touch the source file');
        await assertFetches(r, seg);
      });
    }
  }

  test('16 MiB segments on timeline 1, the default compression (zstd), fetched to a plain path', async () => {
    const r = repo();
    const pgwal = dir('pg_wal');
    const segs = [0xffn, 0x100n].map((segNo) => makeSegment({ segNo })); // the last of log 0, the first of log 1
    for (const seg of segs) {
      const result = await r.push(writeWalFile(pgwal, seg));
      assert.equal(result.code, 0, result.stderr);
    }
    assert.deepEqual(readdirSync(join(r.root, 'wal')).sort(), segs.map((s) => s.name).sort());
    assert.equal(sniff(r.object(segs[0]!.name)), 'zstd');
    const out = dir('out');
    for (const seg of segs) {
      const result = await r.fetch(seg.name, join(out, seg.name));
      assert.equal(result.code, 0, result.stderr);
      assert.ok(readFileSync(join(out, seg.name)).equals(seg.bytes));
    }
    assert.deepEqual(readdirSync(out).sort(), segs.map((s) => s.name).sort());
  });

  for (const compression of ['zstd', 'lz4', 'none']) {
    test(`.history, .backup and .partial files round trip (${compression})`, async () => {
      const r = repo(compression);
      const pgwal = dir('pg_wal');
      const segment = makeSegment({ segmentSize: MiB, segNo: 7n, timeline: 2 });
      const files = [
        makeHistory(2),
        makeHistory(0x1a),
        makeBackupHistory(segment.name, 0x28),
        { name: `${segment.name}.partial`, bytes: segment.bytes },
      ];
      for (const file of files) {
        const result = await r.push(writeWalFile(pgwal, file));
        assert.equal(result.code, 0, `${file.name}: ${result.stderr}`);
        assert.ok(existsSync(join(r.root, 'wal', file.name)), file.name);
      }
      for (const file of files) await assertFetches(r, file);
      // PostgreSQL asks for history files with RECOVERYHISTORY as %p.
      const pgwal2 = dir('pg_wal');
      const result = await r.fetch('0000001A.history', join(pgwal2, 'RECOVERYHISTORY'));
      assert.equal(result.code, 0, result.stderr);
      assert.ok(readFileSync(join(pgwal2, 'RECOVERYHISTORY')).equals(files[1]!.bytes));
    });
  }

  test('as the postgres OS user, by absolute path, as archive_command and restore_command run', async () => {
    const r = repo('zstd');
    chownSync(r.root, postgresUser().uid, postgresUser().gid);
    const pgwal = dir('pg_wal', 'postgres');
    const seg = makeSegment({ segmentSize: MiB, segNo: 9n });
    const path = writeWalFile(pgwal, seg, 0o600);
    chownSync(path, postgresUser().uid, postgresUser().gid);
    const pushed = await r.push(path, { asUser: 'postgres' });
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.equal(statSync(join(r.root, 'wal', seg.name)).uid, postgresUser().uid);
    const fetched = await r.fetch(seg.name, join(pgwal, 'RECOVERYXLOG'), [], { asUser: 'postgres' });
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.ok(readFileSync(join(pgwal, 'RECOVERYXLOG')).equals(seg.bytes));
  });
});

describe('pushing a name that is already archived', { concurrency: true }, () => {
  test('the same bytes again: exit 0, object unchanged (also with another compression setting)', async () => {
    const r = repo('zstd');
    const seg = makeSegment({ segmentSize: MiB, segNo: 3n });
    const path = writeWalFile(dir('pg_wal'), seg);
    assert.equal((await r.push(path)).code, 0);
    const stored = r.object(seg.name);
    for (const env of [r.env, { ...r.env, WALSHIP_COMPRESSION: 'lz4' }, { ...r.env, WALSHIP_COMPRESSION: 'none' }]) {
      const again = await runWalship(['wal-push', path], { env });
      assert.equal(again.code, 0, again.stderr);
      assert.ok(r.object(seg.name).equals(stored));
    }
    const history = makeHistory(2);
    const historyPath = writeWalFile(dir('pg_wal'), history);
    assert.equal((await r.push(historyPath)).code, 0);
    assert.equal((await r.push(historyPath)).code, 0);
    assert.equal(filesUnder(r.root).filter((f) => f.includes('.tmp.')).length, 0);
  });

  test('different bytes under the same name: exit 3, both sha256 digests on stderr, the stored object unchanged', async () => {
    const r = repo('lz4');
    const original = makeSegment({ segmentSize: MiB, segNo: 4n, seed: 'original' });
    const other = makeSegment({ segmentSize: MiB, segNo: 4n, seed: 'rewritten' });
    assert.equal(original.name, other.name);
    assert.equal((await r.push(writeWalFile(dir('pg_wal'), original))).code, 0);
    const stored = r.object(original.name);
    const refused = await r.push(writeWalFile(dir('pg_wal'), other));
    assert.equal(refused.code, ExitCode.refused, refused.stderr);
    assert.ok(refused.stderr.includes(sha256(original.bytes)), `stderr lacks the stored digest: ${refused.stderr}`);
    assert.ok(refused.stderr.includes(sha256(other.bytes)), `stderr lacks the local digest: ${refused.stderr}`);
    assert.equal(refused.stderr.trim().split('\n').length, 1);
    assert.ok(r.object(original.name).equals(stored));
    await assertFetches(r, original);

    const history = makeHistory(3);
    assert.equal((await r.push(writeWalFile(dir('pg_wal'), history))).code, 0);
    const changed = { name: history.name, bytes: Buffer.concat([history.bytes, Buffer.from('# edited\n')]) };
    const refusedHistory = await r.push(writeWalFile(dir('pg_wal'), changed));
    assert.equal(refusedHistory.code, ExitCode.refused, refusedHistory.stderr);
    await assertFetches(r, history);
  });

  test('four pushes of one segment at once all exit 0 and store it once', async () => {
    const r = repo('zstd');
    const seg = makeSegment({ segmentSize: 4 * MiB, segNo: 5n });
    const path = writeWalFile(dir('pg_wal'), seg);
    const results = await Promise.all([1, 2, 3, 4].map(() => r.push(path)));
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(filesUnder(r.root), ['wal/' + seg.name, 'walship.json'].sort());
    await assertFetches(r, seg);
  });

  test('a segment of another database system into the same repository: exit 3, nothing stored', async () => {
    const r = repo('zstd');
    assert.equal((await r.push(writeWalFile(dir('pg_wal'), makeSegment({ segmentSize: MiB, segNo: 1n })))).code, 0);
    const foreign = makeSegment({ segmentSize: MiB, segNo: 2n, systemIdentifier: 7311111111111111111n });
    const result = await r.push(writeWalFile(dir('pg_wal'), foreign));
    assert.equal(result.code, ExitCode.refused, result.stderr);
    assert.match(result.stderr, /7311111111111111111/);
    assert.ok(!existsSync(join(r.root, 'wal', foreign.name)));
  });
});

describe('wal-push refuses bad input with its documented exit code and writes nothing', { concurrency: true }, () => {
  /** Push `path` (a fresh repository), expect `code`, a one-line message matching `pattern`, and an untouched repository. */
  async function refuses(path: string, code: number, pattern: RegExp, options: RunOptions = {}) {
    const r = repo('zstd');
    const result = await r.push(path, options);
    assert.equal(result.code, code, `${path}: ${result.stderr}`);
    assert.match(result.stderr, pattern);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.deepEqual(filesUnder(r.root), [], 'the repository must stay untouched');
  }

  test('a missing file: exit 2', async () => {
    await refuses(join(dir('pg_wal'), '000000010000000000000001'), ExitCode.usage, /no such file/);
  });

  test('a directory: exit 2', async () => {
    const path = join(dir('pg_wal'), '000000010000000000000001');
    mkdirSync(path);
    await refuses(path, ExitCode.usage, /not a regular file/);
  });

  test('a file the postgres user cannot read (root-owned, 0600): exit 2', async () => {
    const path = writeWalFile(dir('pg_wal'), makeSegment({ segmentSize: MiB }), 0o600);
    const r = repo('zstd');
    chownSync(r.root, postgresUser().uid, postgresUser().gid);
    const result = await r.push(path, { asUser: 'postgres' });
    assert.equal(result.code, ExitCode.usage, result.stderr);
    assert.match(result.stderr, /permission denied/);
    assert.deepEqual(filesUnder(r.root), []);
  });

  test('an empty file: exit 2', async () => {
    for (const name of ['000000010000000000000001', '00000002.history']) {
      const path = join(dir('pg_wal'), name);
      writeFileSync(path, '');
      await refuses(path, ExitCode.usage, /empty file/);
    }
  });

  test('a name that is not a WAL file: exit 2', async () => {
    for (const name of ['postgresql.conf', '000000010000000000000001.tmp', '000000010000000a00000001', 'RECOVERYXLOG']) {
      await refuses(writeWalFile(dir('pg_wal'), { name, bytes: makeSegment({ segmentSize: MiB }).bytes }), ExitCode.usage, /not a WAL file name/);
    }
  });

  test('a segment whose page header is for another segment: exit 4', async () => {
    const seg = makeSegment({ segmentSize: MiB, segNo: 6n, pageAddress: 5n * BigInt(MiB) });
    await refuses(writeWalFile(dir('pg_wal'), seg), ExitCode.integrity, /first page is for LSN 0\/500000, not 0\/600000/);
  });

  test('a segment whose size disagrees with its header, or that has no WAL header: exit 4', async () => {
    const seg = makeSegment({ segmentSize: 16 * MiB, segNo: 6n });
    await refuses(writeWalFile(dir('pg_wal'), { name: seg.name, bytes: seg.bytes.subarray(0, MiB) }), ExitCode.integrity, /wal_segment_size/);
    await refuses(writeWalFile(dir('pg_wal'), { name: seg.name, bytes: Buffer.alloc(MiB, 0x41) }), ExitCode.integrity, /no valid WAL page header/);
    await refuses(writeWalFile(dir('pg_wal'), { name: `${seg.name}.partial`, bytes: Buffer.from('short') }), ExitCode.integrity, /no valid WAL page header/);
  });
});

describe('bad configuration: exit 2 before touching the repository', { concurrency: true }, () => {
  let segPath = '';
  before(() => {
    segPath = writeWalFile(dir('pg_wal'), makeSegment({ segmentSize: MiB }));
  });

  async function refusesConfig(args: string[], env: Record<string, string>, pattern: RegExp) {
    const root = join(dir('repo'), 'archive');
    const result = await runWalship(args, { env: { WALSHIP_STORAGE: `file://${root}`, ...env } });
    assert.equal(result.code, ExitCode.usage, result.stderr);
    assert.match(result.stderr, pattern);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.ok(!existsSync(root), 'the repository must not be created');
  }

  test('a garbage config file, by --config and by WALSHIP_CONFIG', async () => {
    const path = join(dir('etc'), 'walship.json');
    writeFileSync(path, 'storage: file:///x\npgpassword: hunter2\n');
    await refusesConfig(['--config', path, 'wal-push', segPath], {}, /not valid JSON/);
    await refusesConfig(['wal-push', segPath], { WALSHIP_CONFIG: path }, new RegExp(`config file ${path}`));
    await refusesConfig(['wal-fetch', '000000010000000000000001', join(dir('pg_wal'), 'dest')], { WALSHIP_CONFIG: path }, /not valid JSON/);
    // Under recovery a configuration error is fatal too, not "no such file".
    const recovery = await runWalship(['wal-fetch', '000000010000000000000001', join(dir('pg_wal'), 'RECOVERYXLOG')], { env: { WALSHIP_CONFIG: path } });
    assert.equal(recovery.code, 128 + ExitCode.usage, recovery.stderr);
    const result = await runWalship(['wal-push', segPath], { env: { WALSHIP_CONFIG: path } });
    assert.ok(!result.stderr.includes('hunter2'));
  });

  test('an unknown compression, from the environment or the file', async () => {
    await refusesConfig(['wal-push', segPath], { WALSHIP_COMPRESSION: 'brotli' }, /WALSHIP_COMPRESSION.*zstd, lz4, none/);
    const path = join(dir('etc'), 'walship.json');
    writeFileSync(path, JSON.stringify({ compression: 'gzip' }));
    await refusesConfig(['--config', path, 'wal-push', segPath], {}, /compression.*zstd, lz4, none/);
  });

  test('an unknown setting, an unknown WALSHIP_ variable, a bad level', async () => {
    const path = join(dir('etc'), 'walship.json');
    writeFileSync(path, JSON.stringify({ compresion: 'lz4' }));
    await refusesConfig(['--config', path, 'wal-push', segPath], {}, /unknown setting 'compresion'/);
    await refusesConfig(['wal-push', segPath], { WALSHIP_STORGE: 'file:///x' }, /WALSHIP_STORGE/);
    await refusesConfig(['wal-push', segPath], { WALSHIP_COMPRESSION_LEVEL: 'max' }, /WALSHIP_COMPRESSION_LEVEL/);
  });

  test('no storage, or a storage URL walship cannot use', async () => {
    const missing = await runWalship(['wal-push', segPath], { env: {} });
    assert.equal(missing.code, ExitCode.usage, missing.stderr);
    assert.match(missing.stderr, /WALSHIP_STORAGE/);
    const fetchMissing = await runWalship(['wal-fetch', '000000010000000000000001', join(dir('pg_wal'), 'x')], { env: {} });
    assert.equal(fetchMissing.code, ExitCode.usage, fetchMissing.stderr);
    for (const url of ['ftp://host/x', 'relative/path', 'file://host/x']) {
      const result = await runWalship(['wal-push', segPath], { env: { WALSHIP_STORAGE: url } });
      assert.equal(result.code, ExitCode.usage, `${url}: ${result.stderr}`);
      assert.match(result.stderr, /storage/);
    }
  });
});

describe('wal-fetch failures', { concurrency: true }, () => {
  const seg = makeSegment({ segmentSize: 8 * MiB, segNo: 0x21n }); // two lz4 frames
  const small = makeSegment({ segmentSize: MiB, segNo: 0x22n });
  const history = makeHistory(2);
  const repos: Record<string, Repo> = {};
  before(async () => {
    const pgwal = dir('pg_wal');
    for (const compression of ['zstd', 'lz4', 'none']) {
      const r = repo(compression);
      for (const file of [seg, small, history]) {
        const result = await r.push(writeWalFile(pgwal, file));
        assert.equal(result.code, 0, result.stderr);
      }
      repos[compression] = r;
    }
  });

  /** Fetch into a fresh pg_wal (as RECOVERYXLOG unless `destName`); expect `code`, no dest and no temp file. */
  async function failsToFetch(r: Repo, name: string, code: number, flags: string[] = [], destName = 'RECOVERYXLOG') {
    const pgwal = dir('pg_wal');
    const result = await r.fetch(name, join(pgwal, destName), flags);
    assert.equal(result.code, code, `${name} ${flags.join(' ')} -> ${destName}: ${result.stderr}`);
    assert.deepEqual(readdirSync(pgwal), [], 'no dest file and no temp file after a failed fetch');
    return result;
  }

  test('a name the archive does not have: exit 1 (also under recovery, also for a .history probe), no dest file', async () => {
    const r = repos.zstd!;
    const missing = await failsToFetch(r, '000000010000000000000099', ExitCode.notFound, [], 'plain-dest');
    assert.doesNotMatch(missing.stderr, /error/);
    await failsToFetch(r, '000000010000000000000099', ExitCode.notFound);
    await failsToFetch(r, '00000063.history', ExitCode.notFound);
    await failsToFetch(r, '000000010000000000000099', ExitCode.notFound, ['--standby']);
    // An empty repository has no WAL either.
    await failsToFetch(repo('zstd'), '000000010000000000000001', ExitCode.notFound);
  });

  test('a repository directory that does not exist (an unmounted volume) is a storage failure, never "not found"', async () => {
    const root = join(dir('repo'), 'not-mounted');
    const env = { WALSHIP_STORAGE: `file://${root}` };
    const fetched = await runWalship(['wal-fetch', '000000010000000000000001', join(dir('pg_wal'), 'RECOVERYXLOG')], { env });
    assert.equal(fetched.code, 128 + ExitCode.storage, fetched.stderr);
    assert.match(fetched.stderr, /does not exist/);
    const pushed = await runWalship(['wal-push', writeWalFile(dir('pg_wal'), makeSegment({ segmentSize: 1 << 20 }))], { env });
    assert.equal(pushed.code, ExitCode.storage, pushed.stderr);
    assert.equal(existsSync(root), false, 'wal-push must not create the repository directory');
  });

  test('a name that is not a WAL file name: exit 2, 130 under recovery', async () => {
    await failsToFetch(repos.zstd!, 'pg_control', ExitCode.usage, [], 'dest');
    await failsToFetch(repos.zstd!, '000000010000000000000001.ready', 128 + ExitCode.usage);
  });

  test('a corrupt zstd object: exit 4; 132 into pg_wal/RECOVERYXLOG; 1 with --standby; 132 with --recovery', async () => {
    const r = repo('zstd');
    mkdirSync(join(r.root, 'wal'), { recursive: true });
    const damaged = Buffer.from(repos.zstd!.object(seg.name));
    damaged[Math.floor(damaged.length / 2)]! ^= 0x04;
    writeFileSync(join(r.root, 'wal', seg.name), damaged);
    const plain = await failsToFetch(r, seg.name, ExitCode.integrity, [], 'segment');
    assert.match(plain.stderr, /corrupt/);
    assert.equal(plain.stderr.trim().split('\n').length, 1, plain.stderr);
    await failsToFetch(r, seg.name, 128 + ExitCode.integrity);
    await failsToFetch(r, seg.name, 128 + ExitCode.integrity, ['--recovery'], 'segment');
    const standby = await failsToFetch(r, seg.name, ExitCode.notFound, ['--standby']);
    assert.match(standby.stderr, /corrupt/, 'the standby case still logs the failure');
  });

  test('truncated objects of every codec: exit 4 (the segment size check catches what the codec cannot)', async () => {
    for (const compression of ['zstd', 'lz4', 'none']) {
      const object = repos[compression]!.object(seg.name);
      const cuts = [Math.floor(object.length / 2), object.length - 1];
      if (compression === 'lz4') cuts.push(lz4SecondFrame(object)); // a whole frame short: a valid, shorter lz4 stream
      for (const cut of cuts) {
        const r = repo(compression);
        mkdirSync(join(r.root, 'wal'), { recursive: true });
        writeFileSync(join(r.root, 'wal', seg.name), object.subarray(0, cut));
        await failsToFetch(r, seg.name, ExitCode.integrity, [], 'dest');
      }
    }
  });

  test('objects that decode to the wrong content: exit 4', async () => {
    // The magic itself damaged: the object no longer names its codec and reads as raw bytes.
    const r1 = repo('zstd');
    mkdirSync(join(r1.root, 'wal'), { recursive: true });
    const badMagic = Buffer.from(repos.zstd!.object(small.name));
    badMagic[0]! ^= 0x01;
    writeFileSync(join(r1.root, 'wal', small.name), badMagic);
    await failsToFetch(r1, small.name, 128 + ExitCode.integrity);
    // Another segment's object under this name (a mix-up in the repository).
    for (const compression of ['lz4', 'none']) {
      const r2 = repo(compression);
      const other = makeSegment({ segmentSize: MiB, segNo: 0x23n });
      mkdirSync(join(r2.root, 'wal'), { recursive: true });
      writeFileSync(join(r2.root, 'wal', other.name), repos[compression]!.object(small.name));
      const result = await failsToFetch(r2, other.name, ExitCode.integrity, [], 'dest');
      assert.match(result.stderr, /LSN/);
    }
    // A damaged history file (compressed, so the checksum catches it).
    const r3 = repo('lz4');
    mkdirSync(join(r3.root, 'wal'), { recursive: true });
    const damagedHistory = Buffer.from(repos.lz4!.object(history.name));
    damagedHistory[damagedHistory.length - 6]! ^= 0x80;
    writeFileSync(join(r3.root, 'wal', history.name), damagedHistory);
    await failsToFetch(r3, history.name, 128 + ExitCode.integrity, [], 'RECOVERYHISTORY');
  });

  test('a corrupt object does not replace a file already at dest', async () => {
    const r = repo('zstd');
    mkdirSync(join(r.root, 'wal'), { recursive: true });
    writeFileSync(join(r.root, 'wal', seg.name), repos.zstd!.object(seg.name).subarray(0, 1000));
    const pgwal = dir('pg_wal');
    writeFileSync(join(pgwal, 'RECOVERYXLOG'), 'previous');
    const result = await r.fetch(seg.name, join(pgwal, 'RECOVERYXLOG'));
    assert.equal(result.code, 128 + ExitCode.integrity, result.stderr);
    assert.deepEqual(readdirSync(pgwal), ['RECOVERYXLOG']);
    assert.equal(readFileSync(join(pgwal, 'RECOVERYXLOG'), 'utf8'), 'previous');
    // And a good fetch replaces it whole.
    await assertFetches(repos.lz4!, seg);
    const ok = await repos.lz4!.fetch(seg.name, join(pgwal, 'RECOVERYXLOG'));
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(readFileSync(join(pgwal, 'RECOVERYXLOG')).equals(seg.bytes));
  });

  test('a dest directory that does not exist: exit 2, 130 under recovery', async () => {
    const gone = join(dir('x'), 'no-such-dir');
    const plain = await repos.zstd!.fetch(seg.name, join(gone, 'segment'));
    assert.equal(plain.code, ExitCode.usage, plain.stderr);
    const recovery = await repos.zstd!.fetch(seg.name, join(gone, 'RECOVERYXLOG'));
    assert.equal(recovery.code, 128 + ExitCode.usage, recovery.stderr);
    assert.ok(!existsSync(gone));
  });

  test('an object the postgres user cannot read (root-owned, 0600): exit 5, 133 under recovery', async () => {
    const r = repo('zstd');
    mkdirSync(join(r.root, 'wal'), { recursive: true });
    writeFileSync(join(r.root, 'wal', seg.name), repos.zstd!.object(seg.name), { mode: 0o600 });
    const pgwal = dir('pg_wal', 'postgres');
    chmodSync(pgwal, 0o700);
    const result = await r.fetch(seg.name, join(pgwal, 'RECOVERYXLOG'), [], { asUser: 'postgres' });
    assert.equal(result.code, 128 + ExitCode.storage, result.stderr);
    assert.match(result.stderr, /permission denied/);
    assert.deepEqual(readdirSync(pgwal), []);
  });
});

/** Offset of the second LZ4 frame in a walship lz4 object. */
function lz4SecondFrame(object: Buffer): number {
  const flags = object[4]!;
  let cursor = 4 + 2 + (flags & 0x08 ? 8 : 0) + (flags & 0x01 ? 4 : 0) + 1;
  for (;;) {
    const word = object.readUInt32LE(cursor);
    if (word === 0) break;
    cursor += 4 + (word & 0x7fffffff) + (flags & 0x10 ? 4 : 0);
  }
  const end = cursor + 4 + (flags & 0x04 ? 4 : 0);
  assert.equal(object.readUInt32LE(end), 0x184d2204, 'a second frame follows the first');
  return end;
}
