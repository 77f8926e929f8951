/**
 * Issue 4 §7: no key material in any log line, error message, repository file or --json output.
 * Runs the encryption flows through the built CLI at log level debug, in text and JSON log
 * formats (keygen, wal-push with recipients and with a passphrase, wal-fetch with the right,
 * wrong and missing identity, an identity file readable by others, and every way of putting a
 * secret into the wrong setting), then searches all of stdout, stderr and every file in the
 * repositories for the secret key in every spelling (bech32 either case, its data part, the raw
 * 32 bytes as hex and base64) and for the passphrase.
 */
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { bech32 } from '@scure/base';
import { requireBuiltCli, runWalship, type RunResult } from '../helpers/cli.ts';
import { makeSegment, MiB, tempDir, writeWalFile } from '../helpers/wal-files.ts';

requireBuiltCli();

let root: { path: string; remove(): void };
before(() => {
  root = tempDir('secrets');
});
after(() => root.remove());

/** Every spelling of a secret that must never appear. */
function spellings(identity: string): string[] {
  const { words } = bech32.decode(identity.toLowerCase() as `${string}1${string}`, false);
  const raw = Buffer.from(bech32.fromWords(words));
  const data = identity.slice('AGE-SECRET-KEY-1'.length);
  return [
    identity,
    identity.toLowerCase(),
    data.slice(0, 24), // a part of the bech32 data, in case of truncation
    data.slice(-24),
    raw.toString('hex'),
    raw.toString('base64').replace(/=+$/, ''),
    raw.toString('base64url'),
    raw.subarray(0, 16).toString('hex'),
  ];
}

function files(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...files(path));
    else out.push(path);
  }
  return out;
}

test('no key material or passphrase in any output, log line, error, --json or repository file', { timeout: 120_000 }, async () => {
  const where = root.path;
  const config = join(where, 'empty.json');
  writeFileSync(config, '{}');
  const outputs: { label: string; text: string }[] = [];
  /** Run walship at debug level in both log formats; record stdout and stderr. */
  async function run(label: string, args: string[], env: Record<string, string> = {}, options: { stdoutHasSecret?: boolean; formats?: ('text' | 'json')[] } = {}): Promise<RunResult> {
    let last: RunResult | undefined;
    for (const format of options.formats ?? ['text', 'json']) {
      last = await runWalship(args, { env: { WALSHIP_CONFIG: config, WALSHIP_LOG_LEVEL: 'debug', WALSHIP_LOG_FORMAT: format, ...env } });
      if (!options.stdoutHasSecret) outputs.push({ label: `${label} (${format}) stdout`, text: last.stdout });
      outputs.push({ label: `${label} (${format}) stderr`, text: last.stderr });
    }
    return last!;
  }

  // keygen: the identity goes only into the file (or to stdout when asked with -o -).
  const keyFile = join(where, 'key.txt');
  const made = await run('keygen -o', ['keygen', '-o', keyFile], {}, { formats: ['text'] });
  assert.equal(made.code, 0, made.stderr);
  const recipient = made.stdout.trim();
  const identity = readFileSync(keyFile, 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  const otherFile = join(where, 'other.txt');
  assert.equal((await run('keygen --json', ['keygen', '-o', otherFile, '--json'], {}, { formats: ['json'] })).code, 0);
  const other = readFileSync(otherFile, 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  const printed = await run('keygen -o -', ['keygen', '-o', '-'], {}, { stdoutHasSecret: true });
  assert.equal(printed.code, 0);
  const printedIdentity = printed.stdout.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  assert.ok(printedIdentity, 'keygen -o - prints the identity on stdout');

  const passphrase = 'Tr0ub4dor&3-very-secret-passphrase';
  const passphraseFile = join(where, 'passphrase');
  writeFileSync(passphraseFile, `${passphrase}\n`, { mode: 0o600 });
  const secrets = [...spellings(identity), ...spellings(other), ...spellings(printedIdentity), passphrase, passphrase.slice(0, 12), passphrase.slice(-12)];

  const repo = join(where, 'repo');
  const passRepo = join(where, 'repo-passphrase');
  mkdirSync(repo);
  mkdirSync(passRepo);
  const segment = makeSegment({ segNo: 1n, segmentSize: MiB });
  const segment2 = makeSegment({ segNo: 2n, segmentSize: MiB });
  const path = writeWalFile(where, segment);
  const path2 = writeWalFile(where, segment2);
  const keys = { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_RECIPIENTS: recipient };

  // Pushes: recipients (with the identity also configured on the host), a duplicate, a passphrase repository.
  assert.equal((await run('wal-push recipients', ['wal-push', path], { ...keys, WALSHIP_IDENTITY_FILE: keyFile })).code, 0);
  assert.equal((await run('wal-push duplicate, no identity', ['wal-push', path], keys)).code, 3);
  assert.equal((await run('wal-push unencrypted refused', ['wal-push', path2], { WALSHIP_STORAGE: `file://${repo}` })).code, 3);
  assert.equal((await run('wal-push passphrase', ['wal-push', path], { WALSHIP_STORAGE: `file://${passRepo}`, WALSHIP_PASSPHRASE_FILE: passphraseFile, WALSHIP_PASSPHRASE_WORK_FACTOR: '10' })).code, 0);

  // Fetches: right identity, wrong identity, none, wrong passphrase, identity file readable by others.
  const out = join(where, 'out');
  mkdirSync(out);
  assert.equal((await run('wal-fetch identity', ['wal-fetch', segment.name, join(out, 'a')], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_IDENTITY_FILE: keyFile })).code, 0);
  assert.equal((await run('wal-fetch wrong identity', ['wal-fetch', segment.name, join(out, 'b')], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_IDENTITY_FILE: otherFile })).code, 4);
  assert.equal((await run('wal-fetch no identity', ['wal-fetch', segment.name, join(out, 'c')], { WALSHIP_STORAGE: `file://${repo}` })).code, 4);
  assert.equal((await run('wal-fetch passphrase', ['wal-fetch', segment.name, join(out, 'd')], { WALSHIP_STORAGE: `file://${passRepo}`, WALSHIP_PASSPHRASE_FILE: passphraseFile })).code, 0);
  const wrongPass = join(where, 'wrong-pass');
  writeFileSync(wrongPass, `${passphrase}-wrong\n`, { mode: 0o600 });
  assert.equal((await run('wal-fetch wrong passphrase', ['wal-fetch', segment.name, join(out, 'e')], { WALSHIP_STORAGE: `file://${passRepo}`, WALSHIP_PASSPHRASE_FILE: wrongPass })).code, 4);
  const looseKey = join(where, 'loose.txt');
  copyFileSync(keyFile, looseKey);
  chmodSync(looseKey, 0o644);
  const loose = await run('wal-fetch loose identity file', ['wal-fetch', segment.name, join(out, 'f')], { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_IDENTITY_FILE: looseKey });
  assert.equal(loose.code, 0);
  assert.match(loose.stderr, /chmod 600/);

  // Secrets in the wrong setting: every one is exit 2, and none is echoed.
  const broken = join(where, 'broken.txt');
  writeFileSync(broken, `${identity.slice(0, -1)}${identity.endsWith('Q') ? 'P' : 'Q'}\n`, { mode: 0o600 });
  const misplaced: [string, Record<string, string>][] = [
    ['secret key as recipient', { WALSHIP_RECIPIENTS: identity }],
    ['secret key (lower case) as recipient', { WALSHIP_RECIPIENTS: `${recipient},${identity.toLowerCase()}` }],
    ['passphrase as recipient', { WALSHIP_RECIPIENTS: passphrase }],
    ['identity file as recipients file', { WALSHIP_RECIPIENTS_FILE: keyFile }],
    ['passphrase file as recipients file', { WALSHIP_RECIPIENTS_FILE: passphraseFile }],
    ['passphrase file as identity file', { WALSHIP_IDENTITY_FILE: passphraseFile }],
    ['identity with a bad checksum', { WALSHIP_IDENTITY_FILE: broken }],
    ['secret key pasted as identity file name', { WALSHIP_IDENTITY_FILE: identity }],
    ['passphrase pasted as passphrase file name', { WALSHIP_PASSPHRASE_FILE: passphrase }],
  ];
  for (const [label, env] of misplaced) {
    const r = await run(label, ['wal-push', path2], { WALSHIP_STORAGE: `file://${repo}`, ...env });
    assert.equal(r.code, 2, `${label}: ${r.stderr}`);
  }
  const viaConfig = join(where, 'walship-bad.json');
  writeFileSync(viaConfig, JSON.stringify({ storage: `file://${repo}`, recipients: [identity] }));
  const fromFile = await runWalship(['wal-push', path2], { env: { WALSHIP_CONFIG: viaConfig, WALSHIP_LOG_LEVEL: 'debug' } });
  outputs.push({ label: 'secret key as recipient in the config file', text: fromFile.stdout + fromFile.stderr });
  assert.equal(fromFile.code, 2);

  // Help texts too (they list the settings).
  for (const args of [['--help'], ['keygen', '--help'], ['wal-push', '--help']]) {
    const r = await runWalship(args, { env: { WALSHIP_CONFIG: config, WALSHIP_IDENTITY_FILE: keyFile, WALSHIP_PASSPHRASE_FILE: passphraseFile } });
    outputs.push({ label: args.join(' '), text: r.stdout + r.stderr });
  }

  // Search.
  const leaks: string[] = [];
  for (const { label, text } of outputs) {
    for (const secret of secrets) if (text.toLowerCase().includes(secret.toLowerCase())) leaks.push(`${label}: contains ${secret.slice(0, 6)}…`);
  }
  const repositoryFiles = [...files(repo), ...files(passRepo)];
  assert.ok(repositoryFiles.some((f) => f.endsWith('walship.json')));
  for (const file of repositoryFiles) {
    const bytes = readFileSync(file);
    for (const secret of secrets) {
      for (const form of [secret, secret.toLowerCase(), secret.toUpperCase()]) {
        if (bytes.includes(Buffer.from(form))) leaks.push(`${file}: contains ${secret.slice(0, 6)}…`);
      }
    }
  }
  assert.deepEqual(leaks, []);
  // The search is not vacuous: the secrets are where they should be, and the outputs are substantial.
  assert.ok(readFileSync(keyFile, 'utf8').includes(identity));
  assert.ok(outputs.some((o) => o.text.includes('"level":"debug"')), 'JSON debug lines were produced');
  assert.ok(outputs.some((o) => o.text.includes('encryption configured')), 'debug lines about the keys were produced');
  assert.ok(outputs.length > 40);
  // walship.json holds only public facts.
  const info = JSON.parse(readFileSync(join(repo, 'walship.json'), 'utf8'));
  assert.deepEqual(Object.keys(info.encryption), ['recipients']);
  assert.match(info.encryption.recipients[0], /^[0-9a-f]{16}$/);
});
