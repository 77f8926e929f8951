/**
 * Issue 4 through the built CLI (`npm run build` first): keygen, encrypted wal-push readable by
 * `age -d -i key.txt | zstd -d` and by the age-encryption package, wal-fetch with, without and
 * with the wrong identity, passphrase mode, two recipients (ops + escrow), key rotation, the
 * repository's encryption record and its refusal of unencrypted pushes.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Decrypter } from 'age-encryption';
import { parseIdentityFile, parseRecipient, recipientFingerprint } from '../../src/codec/age/index.ts';
import { requireBuiltCli, runWalship, type RunResult } from '../helpers/cli.ts';
import { makeSegment, MiB, tempDir, writeWalFile, type WalSegment } from '../helpers/wal-files.ts';

requireBuiltCli();
const haveAge = spawnSync('age', ['--version']).status === 0 && spawnSync('zstd', ['--version']).status === 0;

let root: { path: string; remove(): void };
let config: string;
let n = 0;
before(() => {
  root = tempDir('encryption');
  config = join(root.path, 'empty.json');
  writeFileSync(config, '{}');
});
after(() => root.remove());

/** A fresh directory under the test's temp root. */
function dir(label: string): string {
  const path = join(root.path, `${label}-${++n}`);
  mkdirSync(path, { recursive: true });
  return path;
}

/** A repository directory (file:// storage needs it to exist: it may be a mount point). */
function repoDir(where: string): string {
  const path = join(where, 'repo');
  mkdirSync(path, { recursive: true });
  return path;
}

function walship(args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  return runWalship(args, { env: { WALSHIP_CONFIG: config, ...env } });
}

/** walship keygen -o <dir>/<name>: the identity file path and its recipient. */
async function keygen(where: string, name = 'key.txt'): Promise<{ file: string; recipient: string; identity: string }> {
  const file = join(where, name);
  const run = await walship(['keygen', '-o', file]);
  assert.equal(run.code, 0, run.stderr);
  const identity = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  return { file, recipient: run.stdout.trim(), identity };
}

const small = (segNo: bigint, seed?: string): WalSegment => makeSegment({ segNo, segmentSize: 1 * MiB, ...(seed ? { seed } : {}) });
const fp = (recipient: string) => recipientFingerprint(parseRecipient(recipient));

/** `age -d` with these identity files, then `zstd -d`: the escape hatch of DESIGN §3. */
function ageZstd(object: string, identityFile: string): Buffer {
  const plain = execFileSync('age', ['-d', '-i', identityFile, object], { maxBuffer: 64 * MiB });
  return execFileSync('zstd', ['-d', '-c'], { input: plain, maxBuffer: 64 * MiB });
}

function assertFails(run: RunResult, code: number, pattern: RegExp): void {
  assert.equal(run.code, code, `exit ${run.code}, expected ${code}; stderr: ${run.stderr}`);
  assert.match(run.stderr, pattern);
}

describe('walship keygen', () => {
  test('-o FILE: mode 0600, age-keygen format, only the recipient on stdout', async () => {
    const where = dir('keygen');
    const file = join(where, 'key.txt');
    const run = await walship(['keygen', '-o', file]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^age1[0-9a-z]{58}\n$/);
    const recipient = run.stdout.trim();
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const lines = readFileSync(file, 'utf8').split('\n');
    assert.match(lines[0]!, /^# created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(lines[1], `# public key: ${recipient}`);
    assert.match(lines[2]!, /^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
    assert.equal(lines[3], '');
    assert.equal(lines.length, 4);
    assert.equal(parseIdentityFile(readFileSync(file, 'utf8'), file).length, 1);
    assert.match(run.stderr, new RegExp(`created identity file .*recipient=${recipient} fingerprint=${fp(recipient)}`));
    if (haveAge) assert.equal(execFileSync('age-keygen', ['-y', file], { encoding: 'utf8' }).trim(), recipient);
  });

  test('never overwrites an existing file (exit 3), nor follows a dangling symlink', async () => {
    const where = dir('keygen');
    const { file } = await keygen(where);
    const before = readFileSync(file, 'utf8');
    const again = await walship(['keygen', '-o', file]);
    assertFails(again, 3, /already exists; walship never overwrites an identity file/);
    assert.equal(again.stdout, '');
    assert.equal(readFileSync(file, 'utf8'), before);
    const link = join(where, 'link.txt');
    execFileSync('ln', ['-s', join(where, 'absent-target'), link]);
    assertFails(await walship(['keygen', '-o', link]), 3, /already exists/);
    assert.deepEqual(readdirSync(where).sort(), ['key.txt', 'link.txt']);
  });

  test('no -o: usage error (exit 2), nothing printed on stdout', async () => {
    const run = await walship(['keygen']);
    assertFails(run, 2, /required option '-o, --output <file>'/);
    assert.equal(run.stdout, '');
  });

  test('-o -: the identity file on stdout, the recipient on stderr', async () => {
    const run = await walship(['keygen', '-o', '-']);
    assert.equal(run.code, 0, run.stderr);
    const [identity] = parseIdentityFile(run.stdout, 'stdout');
    const recipient = /public key: (age1\S+)/.exec(run.stdout)![1]!;
    assert.equal(identity!.toString(), `X25519 identity for ${recipient}`);
    assert.match(run.stderr, new RegExp(`recipient=${recipient}`));
    assert.doesNotMatch(run.stderr, /AGE-SECRET-KEY/i);
    assertFails(await walship(['keygen', '-o', '-', '--json']), 2, /--json cannot be combined with -o -/);
  });

  test('--json: recipient, fingerprint and path, no secret', async () => {
    const where = dir('keygen');
    const run = await walship(['keygen', '-o', join(where, 'k'), '--json']);
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.deepEqual(Object.keys(out).sort(), ['fingerprint', 'identityFile', 'recipient']);
    assert.equal(out.fingerprint, fp(out.recipient));
    assert.equal(out.identityFile, join(where, 'k'));
    assert.doesNotMatch(run.stdout, /AGE-SECRET-KEY/i);
  });

  test('a missing directory: exit 2', async () => {
    assertFails(await walship(['keygen', '-o', join(root.path, 'no', 'such', 'dir', 'k')]), 2, /cannot create .*: no such directory/);
  });
});

describe('encrypted WAL through wal-push and wal-fetch', () => {
  test('wal-push encrypts; `age -d -i key.txt | zstd -d` gives the segment back byte for byte; walship.json records the fingerprint', { skip: !haveAge && 'age or zstd CLI missing' }, async () => {
    const where = dir('push');
    const key = await keygen(where);
    const segment = makeSegment({ segNo: 3n }); // a real-sized 16 MiB segment
    const path = writeWalFile(where, segment);
    const repo = repoDir(where);
    const run = await walship(['wal-push', path], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_RECIPIENTS: key.recipient });
    assert.equal(run.code, 0, run.stderr);
    const object = join(repo, 'wal', segment.name);
    assert.equal(readFileSync(object).subarray(0, 22).toString(), 'age-encryption.org/v1\n');
    assert.ok(ageZstd(object, key.file).equals(segment.bytes));
    const info = JSON.parse(readFileSync(join(repo, 'walship.json'), 'utf8'));
    assert.deepEqual(info.encryption, { recipients: [fp(key.recipient)] });
  });

  test('wal-fetch: with the identity the bytes come back; without it exit 4 and the setting named; with the wrong one exit 4; never a dest file', async () => {
    const where = dir('fetch');
    const key = await keygen(where);
    const other = await keygen(where, 'other.txt');
    const segment = small(5n);
    const repo = `file://${repoDir(where)}`;
    assert.equal((await walship(['wal-push', writeWalFile(where, segment)], { WALSHIP_STORAGE: repo, WALSHIP_RECIPIENTS: key.recipient })).code, 0);

    const out = dir('out');
    const ok = await walship(['wal-fetch', segment.name, join(out, 'ok')], { WALSHIP_STORAGE: repo, WALSHIP_IDENTITY_FILE: key.file });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(readFileSync(join(out, 'ok')).equals(segment.bytes));

    const dest = dir('out');
    const none = await walship(['wal-fetch', segment.name, join(dest, 'seg')], { WALSHIP_STORAGE: repo });
    assertFails(none, 4, /object is encrypted; set WALSHIP_IDENTITY_FILE/);
    // The database host's own configuration (recipients only) cannot read either.
    assertFails(await walship(['wal-fetch', segment.name, join(dest, 'seg')], { WALSHIP_STORAGE: repo, WALSHIP_RECIPIENTS: key.recipient }), 4, /object is encrypted; set WALSHIP_IDENTITY_FILE/);
    const wrong = await walship(['wal-fetch', segment.name, join(dest, 'seg')], { WALSHIP_STORAGE: repo, WALSHIP_IDENTITY_FILE: other.file });
    assertFails(wrong, 4, /no identity matches this object/);
    assert.deepEqual(readdirSync(dest), [], 'no destination file and no temp file left behind');
    // Under recovery (dest RECOVERYXLOG) a decryption failure must stop PostgreSQL: 128 + 4.
    assert.equal((await walship(['wal-fetch', segment.name, join(dest, 'RECOVERYXLOG')], { WALSHIP_STORAGE: repo })).code, 132);
    assert.deepEqual(readdirSync(dest), []);
  });

  test('passphrase mode: push and fetch with one passphrase file; age-encryption reads the object with the passphrase', async () => {
    const where = dir('passphrase');
    const passphraseFile = join(where, 'passphrase');
    writeFileSync(passphraseFile, 'correct horse battery staple\n', { mode: 0o600 });
    const segment = small(6n);
    const repo = repoDir(where);
    const env = { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_PASSPHRASE_FILE: passphraseFile, WALSHIP_PASSPHRASE_WORK_FACTOR: '12' };
    const push = await walship(['wal-push', writeWalFile(where, segment)], env);
    assert.equal(push.code, 0, push.stderr);
    assert.deepEqual(JSON.parse(readFileSync(join(repo, 'walship.json'), 'utf8')).encryption, { recipients: [], passphrase: true });
    const object = readFileSync(join(repo, 'wal', segment.name));
    assert.match(object.subarray(0, 100).toString('latin1'), /\n-> scrypt \S+ 12\n/);

    const out = dir('out');
    const fetch = await walship(['wal-fetch', segment.name, join(out, 'seg')], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_PASSPHRASE_FILE: passphraseFile });
    assert.equal(fetch.code, 0, fetch.stderr);
    assert.ok(readFileSync(join(out, 'seg')).equals(segment.bytes));

    const d = new Decrypter();
    d.addPassphrase('correct horse battery staple'); // the trailing newline of the file is not part of it
    const compressed = await d.decrypt(object);
    assert.ok(execFileSync('zstd', ['-d', '-c'], { input: compressed, maxBuffer: 64 * MiB }).equals(segment.bytes));

    writeFileSync(join(where, 'wrong'), 'not the passphrase\n', { mode: 0o600 });
    assertFails(await walship(['wal-fetch', segment.name, join(out, 'x')], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_PASSPHRASE_FILE: join(where, 'wrong') }), 4, /passphrase/);
    assert.deepEqual(readdirSync(out), ['seg']);
  });

  test('two recipients (ops + escrow): each identity alone reads every object, with walship and with age', async () => {
    const where = dir('escrow');
    const ops = await keygen(where, 'ops.txt');
    const escrow = await keygen(where, 'escrow.txt');
    const recipientsFile = join(where, 'recipients.txt');
    writeFileSync(recipientsFile, `# escrow key, kept offline\n${escrow.recipient}\n`);
    const repo = repoDir(where);
    const segment = small(7n);
    const push = await walship(['wal-push', writeWalFile(where, segment)], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_RECIPIENTS: ops.recipient, WALSHIP_RECIPIENTS_FILE: recipientsFile });
    assert.equal(push.code, 0, push.stderr);
    assert.deepEqual(JSON.parse(readFileSync(join(repo, 'walship.json'), 'utf8')).encryption.recipients, [fp(ops.recipient), fp(escrow.recipient)].sort());
    for (const id of [ops, escrow]) {
      const out = dir('out');
      const run = await walship(['wal-fetch', segment.name, join(out, 'seg')], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_IDENTITY_FILE: id.file });
      assert.equal(run.code, 0, run.stderr);
      assert.ok(readFileSync(join(out, 'seg')).equals(segment.bytes));
      if (haveAge) assert.ok(ageZstd(join(repo, 'wal', segment.name), id.file).equals(segment.bytes));
    }
  });

  test('rotation: new objects use the new recipient (logged, recorded); an identity file with old and new keys reads both', async () => {
    const where = dir('rotation');
    const oldKey = await keygen(where, 'old.txt');
    const newKey = await keygen(where, 'new.txt');
    const repo = repoDir(where);
    const storage = `file://${repo}`;
    const before = small(8n);
    const afterRotation = small(9n);
    assert.equal((await walship(['wal-push', writeWalFile(where, before)], { WALSHIP_STORAGE: storage, WALSHIP_RECIPIENTS: oldKey.recipient })).code, 0);
    const rotated = await walship(['wal-push', writeWalFile(where, afterRotation)], { WALSHIP_STORAGE: storage, WALSHIP_RECIPIENTS: newKey.recipient });
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stderr, new RegExp(`recipients differ from those walship.json records .*was="recipients ${fp(oldKey.recipient)}" now="recipients ${fp(newKey.recipient)}"`));
    assert.deepEqual(JSON.parse(readFileSync(join(repo, 'walship.json'), 'utf8')).encryption.recipients, [fp(newKey.recipient)]);
    const again = await walship(['wal-push', writeWalFile(where, small(10n))], { WALSHIP_STORAGE: storage, WALSHIP_RECIPIENTS: newKey.recipient });
    assert.equal(again.stderr, '', 'the rotation is logged once');

    // The restore side keeps every identity: the new key appended to the old file.
    const both = join(where, 'both.txt');
    writeFileSync(both, readFileSync(oldKey.file, 'utf8') + readFileSync(newKey.file, 'utf8'), { mode: 0o600 });
    for (const segment of [before, afterRotation]) {
      const out = dir('out');
      const run = await walship(['wal-fetch', segment.name, join(out, 'seg')], { WALSHIP_STORAGE: storage, WALSHIP_IDENTITY_FILE: both });
      assert.equal(run.code, 0, run.stderr);
      assert.ok(readFileSync(join(out, 'seg')).equals(segment.bytes));
    }
    // Without the old key the old object is unreadable: keep old identities as long as their objects.
    assertFails(await walship(['wal-fetch', before.name, join(dir('out'), 'seg')], { WALSHIP_STORAGE: storage, WALSHIP_IDENTITY_FILE: newKey.file }), 4, /no identity matches/);
  });
});

describe('the repository remembers it is encrypted', () => {
  test('an unencrypted push into an encrypted repository is refused (exit 3) unless --allow-unencrypted or WALSHIP_ALLOW_UNENCRYPTED', async () => {
    const where = dir('refuse');
    const key = await keygen(where);
    const repo = repoDir(where);
    const storage = `file://${repo}`;
    assert.equal((await walship(['wal-push', writeWalFile(where, small(11n))], { WALSHIP_STORAGE: storage, WALSHIP_RECIPIENTS: key.recipient })).code, 0);

    const plain = small(12n);
    const path = writeWalFile(where, plain);
    const refused = await walship(['wal-push', path], { WALSHIP_STORAGE: storage });
    assertFails(refused, 3, /is encrypted \(walship.json: recipients [0-9a-f]{16}\) but no recipients are configured .*WALSHIP_ALLOW_UNENCRYPTED=true/);
    assert.deepEqual(readdirSync(join(repo, 'wal')), [small(11n).name]);
    // A .history file (no segment header, no claim) is checked too.
    const history = { name: '00000002.history', bytes: Buffer.from('1\t0/3000000\tno recovery target specified\n') };
    assertFails(await walship(['wal-push', writeWalFile(where, history)], { WALSHIP_STORAGE: storage }), 3, /refusing to store unencrypted/);

    const forced = await walship(['wal-push', '--allow-unencrypted', path], { WALSHIP_STORAGE: storage });
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /warn: storing an unencrypted object in an encrypted repository/);
    assert.equal(readFileSync(join(repo, 'wal', plain.name)).readUInt32LE(0), 0xfd2fb528, 'zstd, not age');
    const byEnv = await walship(['wal-push', writeWalFile(where, small(13n))], { WALSHIP_STORAGE: storage, WALSHIP_ALLOW_UNENCRYPTED: 'true' });
    assert.equal(byEnv.code, 0, byEnv.stderr);
    assert.ok(JSON.parse(readFileSync(join(repo, 'walship.json'), 'utf8')).encryption, 'the repository stays recorded as encrypted');

    // A mixed repository reads fine with the identity: encryption is detected per object.
    for (const segment of [small(11n), plain]) {
      const out = dir('out');
      const run = await walship(['wal-fetch', segment.name, join(out, 's')], { WALSHIP_STORAGE: storage, WALSHIP_IDENTITY_FILE: key.file });
      assert.equal(run.code, 0, run.stderr);
      assert.ok(readFileSync(join(out, 's')).equals(segment.bytes));
    }
  });

  test('an existing unencrypted repository that starts encrypting records it', async () => {
    const where = dir('upgrade');
    const key = await keygen(where);
    const repo = repoDir(where);
    assert.equal((await walship(['wal-push', writeWalFile(where, small(14n))], { WALSHIP_STORAGE: `file://${repo}` })).code, 0);
    assert.equal(JSON.parse(readFileSync(join(repo, 'walship.json'), 'utf8')).encryption, undefined);
    const run = await walship(['wal-push', writeWalFile(where, small(15n))], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_RECIPIENTS: key.recipient });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /repository was unencrypted; new objects are encrypted/);
    assert.deepEqual(JSON.parse(readFileSync(join(repo, 'walship.json'), 'utf8')).encryption, { recipients: [fp(key.recipient)] });
  });

  test('pushing an archived segment again: without an identity it cannot be compared (exit 3); with one, identical is exit 0 and different is exit 3', async () => {
    const where = dir('duplicate');
    const key = await keygen(where);
    const storage = `file://${repoDir(where)}`;
    const segment = small(16n);
    const path = writeWalFile(where, segment);
    const writer = { WALSHIP_STORAGE: storage, WALSHIP_RECIPIENTS: key.recipient };
    assert.equal((await walship(['wal-push', path], writer)).code, 0);
    assertFails(await walship(['wal-push', path], writer), 3, /already archived in .*, encrypted, and this host has no identity .* to compare it/);
    const same = await walship(['wal-push', path], { ...writer, WALSHIP_IDENTITY_FILE: key.file });
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stderr, /already archived with identical content/);
    const otherDir = dir('duplicate-other');
    const different = writeWalFile(otherDir, small(16n, 'different payload'));
    assertFails(await walship(['wal-push', different], { ...writer, WALSHIP_IDENTITY_FILE: key.file }), 3, /different content/);
  });
});

describe('PostgreSQL pushing an archived file again, on a host with only recipients', () => {
  test('the same file from pg_wal (a retry after a crash) exits 0 from the local push record; a different file under that name is still refused', async () => {
    const where = dir('retry');
    const key = await keygen(where);
    const storage = `file://${repoDir(where)}`;
    const pgWal = join(where, 'pg_wal');
    mkdirSync(pgWal);
    const writer = { WALSHIP_STORAGE: storage, WALSHIP_RECIPIENTS: key.recipient };
    const path = writeWalFile(pgWal, small(18n));
    assert.equal((await walship(['wal-push', path], writer)).code, 0);
    const retry = await walship(['wal-push', path], writer);
    assert.equal(retry.code, 0, retry.stderr);
    assert.match(retry.stderr, /already archived by this host/);
    // PostgreSQL never rewrites a ready WAL file; a different one under the name cannot be vouched for.
    rmSync(path);
    writeWalFile(pgWal, small(18n, 'different payload'));
    assertFails(await walship(['wal-push', path], writer), 3, /this host has no identity .* to compare it/);
    // The record belongs to the repository it was made for: repository B already holds another
    // file under the name; the note about repository A vouches for nothing there.
    const repoB = `file://${repoDir(dir('retry-b'))}`;
    const elsewhere = writeWalFile(dir('retry-b-source'), small(19n, 'other cluster payload'));
    assert.equal((await walship(['wal-push', elsewhere], { ...writer, WALSHIP_STORAGE: repoB })).code, 0);
    const ours = writeWalFile(pgWal, small(19n));
    assert.equal((await walship(['wal-push', ours], writer)).code, 0);
    assertFails(await walship(['wal-push', ours], { ...writer, WALSHIP_STORAGE: repoB }), 3, /this host has no identity .* to compare it/);
  });
});

describe('bad key settings through the CLI', () => {
  test('a malformed recipient: exit 2 naming the setting, before anything is stored', async () => {
    const where = dir('bad');
    const repo = repoDir(where);
    const run = await walship(['wal-push', writeWalFile(where, small(17n))], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_RECIPIENTS: 'age1notarecipient' });
    assertFails(run, 2, /setting recipients \(WALSHIP_RECIPIENTS\): entry 1: recipient "age1notare…" is malformed/);
    assert.deepEqual(readdirSync(repo), [], 'nothing stored');
    const viaFile = join(where, 'walship.json');
    writeFileSync(viaFile, JSON.stringify({ storage: `file://${repo}`, recipients: ['age1notarecipient'] }));
    assertFails(await runWalship(['wal-push', join(where, small(17n).name)], { env: { WALSHIP_CONFIG: viaFile } }), 2, /setting recipients \(WALSHIP_RECIPIENTS\)/);
  });

  test('an identity file readable by others: one warning line, and the fetch still succeeds', async () => {
    const where = dir('perm');
    const key = await keygen(where);
    const storage = `file://${repoDir(where)}`;
    const segment = small(18n);
    assert.equal((await walship(['wal-push', writeWalFile(where, segment)], { WALSHIP_STORAGE: storage, WALSHIP_RECIPIENTS: key.recipient })).code, 0);
    chmodSync(key.file, 0o644);
    const run = await walship(['wal-fetch', segment.name, join(dir('out'), 'seg')], { WALSHIP_STORAGE: storage, WALSHIP_IDENTITY_FILE: key.file });
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /warn: .*key.txt holds a secret but is accessible to group or others; run chmod 600 on it setting=WALSHIP_IDENTITY_FILE mode=0644/);
  });

  test('a missing identity file: exit 2 naming the setting; a value that is no path is not shown', async () => {
    const missing = join(dir('keys'), 'key.txt');
    const run = await walship(['wal-fetch', '000000010000000000000001', join(dir('out'), 'x')], { WALSHIP_STORAGE: `file://${dir('repo')}`, WALSHIP_IDENTITY_FILE: missing });
    assertFails(run, 2, new RegExp(`setting identityFile \\(WALSHIP_IDENTITY_FILE\\): cannot read ${missing}: no such file`));
    const pasted = await walship(['wal-fetch', '000000010000000000000001', join(dir('out'), 'x')], { WALSHIP_STORAGE: `file://${dir('repo')}`, WALSHIP_PASSPHRASE_FILE: 'pasted-passphrase/not-a-file' });
    assertFails(pasted, 2, /setting passphraseFile \(WALSHIP_PASSPHRASE_FILE\): cannot read the file it names: no such file \(the value is not shown/);
    assert.doesNotMatch(pasted.stderr, /pasted-passphrase/);
  });
});
