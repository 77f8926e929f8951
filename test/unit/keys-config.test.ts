/**
 * Encryption from settings (src/codec/keys.ts) and the repository's encryption record
 * (src/repository.ts checkRepositoryEncryption): which settings encrypt, which read, what
 * walship.json records, and that every bad setting is exit 2 naming it without echoing a secret.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import { decodeObject, encodeObject, type Encryption } from '../../src/codec/codec.ts';
import { decryptBuffer, encryptBuffer, generateIdentity, parseIdentity, parseRecipient, recipientFingerprint, scryptIdentity } from '../../src/codec/age/index.ts';
import { encryptionFromConfig, encryptionRecord, uncomparableEncrypted } from '../../src/codec/keys.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ExitCode, integrityError, WalshipError } from '../../src/errors.ts';
import { configureLog } from '../../src/log.ts';
import { checkRepositoryEncryption, claimRepository, readRepositoryInfo } from '../../src/repository.ts';
import { FileStorage } from '../../src/storage/file.ts';

const dir = mkdtempSync(join(tmpdir(), 'walship-keys-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const emptyConfig = join(dir, 'empty.json');
writeFileSync(emptyConfig, '{}');

function file(text: string, mode = 0o600): string {
  const path = join(dir, `f${++n}`);
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
  return path;
}

const config = (env: Record<string, string>) => loadConfig({ env, configPath: emptyConfig });
const encryption = (env: Record<string, string>) => encryptionFromConfig(config(env));

/** Capture what the log writes to stderr while `run` runs. */
async function captureStderr<T>(run: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const original = process.stderr.write.bind(process.stderr);
  const lines: string[] = [];
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    return true;
  }) as typeof process.stderr.write;
  try {
    return { result: await run(), lines };
  } finally {
    process.stderr.write = original;
  }
}

/** Must fail with exit 2, one line, matching every pattern and containing none of `secrets`. */
async function rejectsUsage(run: () => Promise<unknown>, patterns: RegExp[], secrets: string[] = []): Promise<void> {
  await assert.rejects(run, (err: unknown) => {
    assert.ok(err instanceof WalshipError, String(err));
    assert.equal(err.exitCode, ExitCode.usage, err.message);
    assert.doesNotMatch(err.message, /\n/);
    for (const p of patterns) assert.match(err.message, p);
    for (const s of secrets) assert.ok(!err.message.toLowerCase().includes(s.toLowerCase()), `message leaks a secret: ${err.message}`);
    return true;
  });
}

async function roundTrip(write: Encryption | undefined, read: Encryption | undefined, payload = Buffer.from('x'.repeat(200_000))): Promise<Buffer> {
  const object = await buffer(await encodeObject(Readable.from([payload]), { compression: 'zstd', encryption: write }));
  return buffer(decodeObject(Readable.from([object]), read, 'test object'));
}

const alice = generateIdentity();
const bob = generateIdentity();
const fp = (recipient: string) => recipientFingerprint(parseRecipient(recipient));

describe('encryptionFromConfig', () => {
  test('no key setting: no encryption, and the age module is not needed', async () => {
    assert.equal(await encryption({}), undefined);
    assert.equal(encryptionRecord(undefined), undefined);
  });

  test('recipients only: encrypts, cannot read; the record holds sorted public fingerprints', async () => {
    const e = await encryption({ WALSHIP_RECIPIENTS: `${alice.recipient}, ${bob.recipient}` });
    assert.ok(e?.encrypt);
    assert.equal(e.decrypt, undefined);
    assert.deepEqual(encryptionRecord(e), { recipients: [fp(alice.recipient), fp(bob.recipient)].sort() });
    const object = await buffer(await encodeObject(Readable.from([Buffer.from('hello')]), { compression: 'none', encryption: e }));
    for (const id of [alice, bob]) assert.equal((await decryptBuffer(object, [parseIdentity(id.identity)])).toString(), 'hello');
  });

  test('encrypted output round-trips at every size around chunk and coalescing boundaries, and age reads it', async () => {
    const e = await encryption({ WALSHIP_RECIPIENTS: alice.recipient });
    const read = await encryption({ WALSHIP_IDENTITY_FILE: file(`${alice.identity}\n`) });
    for (const size of [0, 1, 65535, 65536, 65537, (1 << 20) - 1, 1 << 20, (1 << 20) + 17, 3 * (1 << 20) + 7]) {
      const payload = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4096) payload[i] = (i >>> 12) & 0xff;
      const pieces = [payload.subarray(0, size >> 1), payload.subarray(size >> 1)];
      const object = await buffer(await encodeObject(Readable.from(pieces), { compression: 'none', encryption: e }));
      assert.ok((await decryptBuffer(object, [parseIdentity(alice.identity)])).equals(payload), `size ${size}`);
      assert.ok((await buffer(decodeObject(Readable.from([object]), read, 'o'))).equals(payload), `size ${size}`);
    }
  });

  test('recipients from the setting and the file are merged and deduplicated', async () => {
    const recipientsFile = file(`# ops\n${alice.recipient}\n\n  # escrow, offline\n${bob.recipient}\r\n${alice.recipient}\n`, 0o644);
    const e = await encryption({ WALSHIP_RECIPIENTS: alice.recipient, WALSHIP_RECIPIENTS_FILE: recipientsFile });
    assert.deepEqual(encryptionRecord(e)?.recipients, [fp(alice.recipient), fp(bob.recipient)].sort());
  });

  test('identity file: reads objects for any of its identities; never makes walship encrypt', async () => {
    const identityFile = file(`# created: 2026-01-01T00:00:00Z\n# public key: ${alice.recipient}\n${alice.identity}\n${bob.identity}\n`);
    const read = await encryption({ WALSHIP_IDENTITY_FILE: identityFile });
    assert.ok(read?.decrypt);
    assert.equal(read.encrypt, undefined);
    assert.equal(encryptionRecord(read), undefined);
    for (const r of [alice, bob]) {
      const write = await encryption({ WALSHIP_RECIPIENTS: r.recipient });
      assert.equal((await roundTrip(write, read)).length, 200_000);
    }
  });

  test('the reader detects encryption by header and names the setting when no identity is configured', async () => {
    const write = await encryption({ WALSHIP_RECIPIENTS: alice.recipient });
    const onlyRecipients = write; // a database host: can write, cannot read
    await assert.rejects(roundTrip(write, onlyRecipients), (err: unknown) => {
      assert.ok(err instanceof WalshipError);
      assert.equal(err.exitCode, ExitCode.integrity);
      assert.match(err.message, /object is encrypted; set WALSHIP_IDENTITY_FILE/);
      return true;
    });
  });

  test('wrong identity: integrity error (exit 4)', async () => {
    const write = await encryption({ WALSHIP_RECIPIENTS: alice.recipient });
    const read = await encryption({ WALSHIP_IDENTITY_FILE: file(`${bob.identity}\n`) });
    await assert.rejects(roundTrip(write, read), (err: unknown) => err instanceof WalshipError && err.exitCode === ExitCode.integrity);
  });

  test('passphrase file: trailing line breaks trimmed, other whitespace kept; encrypts and reads', async () => {
    for (const text of ['correct horse\n', 'correct horse\r\n', 'correct horse', 'correct horse\n\n']) {
      const e = await encryption({ WALSHIP_PASSPHRASE_FILE: file(text), WALSHIP_PASSPHRASE_WORK_FACTOR: '10' });
      assert.ok(e?.encrypt && e.decrypt);
      assert.deepEqual(encryptionRecord(e), { recipients: [], passphrase: true });
      const object = await buffer(await encodeObject(Readable.from([Buffer.from('wal')]), { compression: 'none', encryption: e }));
      assert.equal((await decryptBuffer(object, [scryptIdentity('correct horse')])).toString(), 'wal', JSON.stringify(text));
      assert.match(object.subarray(0, 120).toString('latin1'), /-> scrypt \S+ 10\n/);
    }
    const spaced = await encryption({ WALSHIP_PASSPHRASE_FILE: file(' pass \n'), WALSHIP_PASSPHRASE_WORK_FACTOR: '10' });
    const object = await encryptBuffer(Buffer.from('wal'), [(await import('../../src/codec/age/index.ts')).scryptRecipient(' pass ', 10)]);
    assert.equal((await buffer(decodeObject(Readable.from([object]), spaced, 'o'))).toString(), 'wal');
  });

  test('passphrase work factor defaults to 15 and is bounded 10..22', async () => {
    assert.equal(config({}).passphraseWorkFactor, 15);
    assert.throws(() => config({ WALSHIP_PASSPHRASE_WORK_FACTOR: '9' }), /WALSHIP_PASSPHRASE_WORK_FACTOR/);
    assert.throws(() => config({ WALSHIP_PASSPHRASE_WORK_FACTOR: '23' }), /WALSHIP_PASSPHRASE_WORK_FACTOR/);
  });

  test('recipients and passphrase together: recipients write, the passphrase (and identity) still read', async () => {
    const passphraseFile = file('old passphrase\n');
    const oldWrite = await encryption({ WALSHIP_PASSPHRASE_FILE: passphraseFile, WALSHIP_PASSPHRASE_WORK_FACTOR: '10' });
    const both = await encryption({ WALSHIP_RECIPIENTS: alice.recipient, WALSHIP_PASSPHRASE_FILE: passphraseFile, WALSHIP_IDENTITY_FILE: file(`${alice.identity}\n`) });
    assert.deepEqual(encryptionRecord(both), { recipients: [fp(alice.recipient)] });
    assert.equal((await roundTrip(oldWrite, both)).length, 200_000);
    assert.equal((await roundTrip(both, both)).length, 200_000);
  });

  test('an identity or passphrase file readable by group/others: one warning line, not fatal, no secret in it', async () => {
    const identityFile = file(`${alice.identity}\n`, 0o640);
    const passphraseFile = file('hunter2 horse\n', 0o604);
    configureLog({ level: 'debug' });
    try {
      const { result, lines } = await captureStderr(() => encryption({ WALSHIP_IDENTITY_FILE: identityFile }));
      assert.ok(result?.decrypt);
      const warnings = lines.filter((l) => l.includes('warn'));
      assert.equal(warnings.length, 1, lines.join('\n'));
      assert.match(warnings[0]!, new RegExp(`${identityFile}.*chmod 600.*WALSHIP_IDENTITY_FILE.*mode=0640`));
      for (const l of lines) assert.ok(!l.includes(alice.identity), l);

      const second = await captureStderr(() => encryption({ WALSHIP_PASSPHRASE_FILE: passphraseFile }));
      assert.equal(second.lines.filter((l) => l.includes('warn')).length, 1);
      for (const l of second.lines) assert.ok(!l.includes('hunter2'), l);

      chmodSync(identityFile, 0o600);
      const quiet = await captureStderr(() => encryption({ WALSHIP_IDENTITY_FILE: identityFile }));
      assert.equal(quiet.lines.filter((l) => l.includes('warn')).length, 0, quiet.lines.join('\n'));
      // A recipients file is public: no warning whatever its mode.
      const pub = await captureStderr(() => encryption({ WALSHIP_RECIPIENTS_FILE: file(`${alice.recipient}\n`, 0o644) }));
      assert.equal(pub.lines.filter((l) => l.includes('warn')).length, 0);
    } finally {
      configureLog({ level: 'info' });
    }
  });
});

describe('bad key settings: exit 2, naming the setting, never echoing a secret', () => {
  const passphrase = 'my-very-secret-passphrase';
  test('malformed recipients', async () => {
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS: 'age1qqqqqqqqqqqqqqqqqqqqqqqqqqqq' }), [/^setting recipients \(WALSHIP_RECIPIENTS\): entry 1: /, /malformed/]);
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS: `${alice.recipient},${bob.recipient.slice(0, -1)}${bob.recipient.endsWith('x') ? 'y' : 'x'}` }), [/WALSHIP_RECIPIENTS\): entry 2/, /checksum/]);
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS: passphrase }), [/WALSHIP_RECIPIENTS/, /not an age X25519 recipient/], [passphrase, 'my-very']);
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS: alice.identity }), [/WALSHIP_RECIPIENTS/, /secret key/], [alice.identity, alice.identity.slice(16, 30)]);
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS: 'ssh-ed25519 AAAAC3Nza' }), [/SSH keys are not supported/]);
  });

  test('recipients file: missing, empty, or holding something else', async () => {
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS_FILE: join(dir, 'nope') }), [/^setting recipientsFile \(WALSHIP_RECIPIENTS_FILE\): cannot read .*nope: no such file$/]);
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS_FILE: file('# nothing\n\n') }), [/WALSHIP_RECIPIENTS_FILE.*contains no recipients/]);
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS_FILE: dir }), [/WALSHIP_RECIPIENTS_FILE/]);
    // The identity file given by mistake: the secret line is named by number, never shown.
    const identityFile = file(`# created: x\n# public key: ${alice.recipient}\n${alice.identity}\n`);
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS_FILE: identityFile }), [/WALSHIP_RECIPIENTS_FILE\): .* line 3: this is a secret key/], [alice.identity]);
    await rejectsUsage(() => encryption({ WALSHIP_RECIPIENTS_FILE: file(`${passphrase}\n`) }), [/line 1: not an age X25519 recipient/], [passphrase, 'my-very']);
  });

  test('identity file: missing, malformed, a passphrase or a recipient instead', async () => {
    await rejectsUsage(() => encryption({ WALSHIP_IDENTITY_FILE: join(dir, 'nope') }), [/^setting identityFile \(WALSHIP_IDENTITY_FILE\): cannot read .*: no such file$/]);
    await rejectsUsage(() => encryption({ WALSHIP_IDENTITY_FILE: file(`${passphrase}\n`) }), [/WALSHIP_IDENTITY_FILE\): identity file .* line 1 is not an age identity/], [passphrase, 'my-very']);
    const broken = `${alice.identity.slice(0, -3)}${alice.identity.endsWith('QQQ') ? 'PPP' : 'QQQ'}`;
    await rejectsUsage(() => encryption({ WALSHIP_IDENTITY_FILE: file(`${broken}\n`) }), [/WALSHIP_IDENTITY_FILE.*malformed/], [broken, broken.slice(16, 40)]);
    await rejectsUsage(() => encryption({ WALSHIP_IDENTITY_FILE: file('# only comments\n') }), [/WALSHIP_IDENTITY_FILE.*no identities/]);
    await rejectsUsage(() => encryption({ WALSHIP_IDENTITY_FILE: file(`${alice.recipient}\n`) }), [/WALSHIP_IDENTITY_FILE.*not an age identity/]);
  });

  test('passphrase file: missing or empty', async () => {
    await rejectsUsage(() => encryption({ WALSHIP_PASSPHRASE_FILE: join(dir, 'nope') }), [/^setting passphraseFile \(WALSHIP_PASSPHRASE_FILE\): cannot read/]);
    await rejectsUsage(() => encryption({ WALSHIP_PASSPHRASE_FILE: file('\n') }), [/WALSHIP_PASSPHRASE_FILE.*is empty/]);
  });
});

describe('walship.json records the encryption; writers check it', () => {
  let repo: string;
  let storage: FileStorage;
  const cluster = { systemIdentifier: 7300000000000000001n, pgMajor: 17 };
  beforeEach(() => {
    repo = mkdtempSync(join(dir, 'repo-'));
    storage = new FileStorage(repo);
  });
  afterEach(() => rmSync(repo, { recursive: true, force: true }));
  const json = () => JSON.parse(readFileSync(join(repo, 'walship.json'), 'utf8'));

  test('first write records fingerprints; the same set passes silently', async () => {
    const e = await encryption({ WALSHIP_RECIPIENTS: `${alice.recipient},${bob.recipient}` });
    const info = await claimRepository(storage, cluster, { encryption: encryptionRecord(e) });
    assert.deepEqual(json().encryption, { recipients: [fp(alice.recipient), fp(bob.recipient)].sort() });
    const { lines } = await captureStderr(() => checkRepositoryEncryption(storage, info, encryptionRecord(e)));
    assert.deepEqual(lines, []);
    assert.ok(!readFileSync(join(repo, 'walship.json'), 'utf8').includes('AGE-SECRET'));
  });

  test('unencrypted writer into an encrypted repository: refused (exit 3) unless allowed, with one warning', async () => {
    const e = await encryption({ WALSHIP_RECIPIENTS: alice.recipient });
    await claimRepository(storage, cluster, { encryption: encryptionRecord(e) });
    await assert.rejects(checkRepositoryEncryption(storage, undefined, undefined), (err: unknown) => {
      assert.ok(err instanceof WalshipError);
      assert.equal(err.exitCode, ExitCode.refused);
      assert.match(err.message, /is encrypted .*refusing to store unencrypted objects.*WALSHIP_ALLOW_UNENCRYPTED=true/);
      return true;
    });
    const { lines } = await captureStderr(() => checkRepositoryEncryption(storage, undefined, undefined, { allowUnencrypted: true }));
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /warn: storing an unencrypted object in an encrypted repository/);
    assert.ok(json().encryption, 'the record stays');
  });

  test('rotation: another recipient set is allowed, logged once and recorded', async () => {
    const old = await encryption({ WALSHIP_RECIPIENTS: alice.recipient });
    await claimRepository(storage, cluster, { encryption: encryptionRecord(old) });
    const rotated = await encryption({ WALSHIP_RECIPIENTS: `${bob.recipient},${alice.recipient}` });
    const first = await captureStderr(() => checkRepositoryEncryption(storage, undefined, encryptionRecord(rotated)));
    assert.equal(first.lines.length, 1);
    assert.match(first.lines[0]!, new RegExp(`recipients differ .*was="recipients ${fp(alice.recipient)}" now=`));
    assert.deepEqual(json().encryption.recipients, encryptionRecord(rotated)!.recipients);
    const second = await captureStderr(() => checkRepositoryEncryption(storage, undefined, encryptionRecord(rotated)));
    assert.deepEqual(second.lines, []);
    assert.equal(json().systemIdentifier, '7300000000000000001');
  });

  test('an unencrypted repository that starts encrypting records it; no walship.json yet: nothing to check', async () => {
    await checkRepositoryEncryption(storage, undefined, undefined);
    assert.equal(await readRepositoryInfo(storage), undefined);
    await claimRepository(storage, cluster);
    assert.equal(json().encryption, undefined);
    const e = await encryption({ WALSHIP_PASSPHRASE_FILE: file('pw\n') });
    const { lines } = await captureStderr(() => checkRepositoryEncryption(storage, undefined, encryptionRecord(e)));
    assert.match(lines.join('\n'), /repository was unencrypted/);
    assert.deepEqual(json().encryption, { recipients: [], passphrase: true });
  });
});

describe('uncomparableEncrypted', () => {
  test('an encrypted duplicate on a host without identity is a refusal (exit 3), other errors pass through', async () => {
    const noIdentity = await encryption({ WALSHIP_RECIPIENTS: alice.recipient });
    const encrypted = integrityError('file:///r/wal/X: object is encrypted; set WALSHIP_IDENTITY_FILE (or WALSHIP_PASSPHRASE_FILE) to read it');
    assert.throws(() => uncomparableEncrypted('X', 'file:///r', noIdentity)(encrypted), (err: unknown) => err instanceof WalshipError && err.exitCode === ExitCode.refused && /already archived .*no identity/.test(err.message));
    const corrupt = integrityError('corrupt object');
    assert.throws(() => uncomparableEncrypted('X', 'file:///r', noIdentity)(corrupt), (err: unknown) => err === corrupt);
    const withIdentity = await encryption({ WALSHIP_IDENTITY_FILE: file(`${alice.identity}\n`) });
    assert.throws(() => uncomparableEncrypted('X', 'file:///r', withIdentity)(encrypted), (err: unknown) => err === encrypted);
  });
});
