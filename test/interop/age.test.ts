/**
 * Interop with the reference tools, both ways: the `age` CLI (Debian package
 * `age`) and the `age-encryption` npm package (typage).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import { Decrypter, Encrypter, generateIdentity as typageGenerateIdentity, identityToRecipient } from 'age-encryption';
import { ExitCode, WalshipError } from '../../src/errors.ts';
import {
  decryptBuffer,
  encryptBuffer,
  generateIdentity,
  parseIdentity,
  parseIdentityFile,
  parseRecipient,
  scryptIdentity,
  scryptRecipient,
} from '../../src/codec/age/index.ts';

const AGE = '/usr/bin/age';
const AGE_KEYGEN = '/usr/bin/age-keygen';
const haveAge = fs.existsSync(AGE) && fs.existsSync(AGE_KEYGEN);
const haveScript = fs.existsSync('/usr/bin/script');
const haveZstd = spawnSync('zstd', ['--version']).status === 0;
const SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536 + 7, 2 * 1024 * 1024 + 5];
const PASSPHRASE = 'interop passphrase: horse battery';

let dir = '';
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'walship-age-'));
});
after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function run(cmd: string, args: string[], input?: Buffer): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.toString()}`);
  return r.stdout;
}

/** Runs an age command under a pty (age reads passphrases from the terminal only). */
function runWithTty(ageArgs: string[], typed: string): void {
  const command = [AGE, ...ageArgs].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = spawnSync('/usr/bin/script', ['-qec', command, '/dev/null'], { input: typed, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`age ${ageArgs.join(' ')} under script failed (${r.status}): ${r.stdout.toString()}`);
}

describe('age interop: age CLI', { skip: !haveAge && 'the age CLI is not installed' }, () => {
  it('walship-encrypted objects decrypt with `age -d -i key.txt`', async () => {
    const keyFile = path.join(dir, 'cli-key.txt');
    run(AGE_KEYGEN, ['-o', keyFile]);
    const recipient = run(AGE_KEYGEN, ['-y', keyFile]).toString().trim();
    const r = parseRecipient(recipient);
    for (const size of SIZES) {
      const plain = crypto.randomBytes(size);
      const obj = path.join(dir, `w-${size}.age`);
      fs.writeFileSync(obj, await encryptBuffer(plain, [parseRecipient(generateIdentity().recipient), r]));
      assert.ok(run(AGE, ['-d', '-i', keyFile, obj]).equals(plain), `size ${size}`);
    }
  });

  it('objects made by `age -r` (one or several recipients) decrypt with walship', async () => {
    const keyFile = path.join(dir, 'cli-key2.txt');
    run(AGE_KEYGEN, ['-o', keyFile]);
    const recipient = run(AGE_KEYGEN, ['-y', keyFile]).toString().trim();
    const other = generateIdentity();
    const ids = parseIdentityFile(fs.readFileSync(keyFile, 'utf8'), keyFile);
    for (const size of SIZES) {
      const plain = crypto.randomBytes(size);
      const single = run(AGE, ['-r', recipient], plain);
      assert.ok((await decryptBuffer(single, ids)).equals(plain), `size ${size}`);
      const multi = run(AGE, ['-r', other.recipient, '-r', recipient], plain);
      assert.ok((await decryptBuffer(multi, ids)).equals(plain));
      assert.ok((await decryptBuffer(multi, [parseIdentity(other.identity)])).equals(plain));
    }
  });

  it('walship keys work with age-keygen and age', async () => {
    const k = generateIdentity();
    const keyFile = path.join(dir, 'walship-key.txt');
    fs.writeFileSync(keyFile, `# created by walship\n# public key: ${k.recipient}\n${k.identity}\n`, { mode: 0o600 });
    assert.equal(run(AGE_KEYGEN, ['-y', keyFile]).toString().trim(), k.recipient);
    const plain = crypto.randomBytes(100_000);
    const enc = run(AGE, ['-r', k.recipient], plain);
    assert.ok((await decryptBuffer(enc, [parseIdentity(k.identity)])).equals(plain));
    const obj = path.join(dir, 'wk.age');
    fs.writeFileSync(obj, await encryptBuffer(plain, [parseRecipient(k.recipient)]));
    assert.ok(run(AGE, ['-d', '-i', keyFile, obj]).equals(plain));
  });

  it('identity files with several keys, as age reads them', async () => {
    const a = generateIdentity();
    const b = generateIdentity();
    const keyFile = path.join(dir, 'two-keys.txt');
    fs.writeFileSync(keyFile, `# a\n${a.identity}\n\n# b\n${b.identity}\n`);
    const obj = path.join(dir, 'two.age');
    const plain = Buffer.from('either key opens this\n');
    fs.writeFileSync(obj, await encryptBuffer(plain, [parseRecipient(b.recipient)]));
    assert.ok(run(AGE, ['-d', '-i', keyFile, obj]).equals(plain));
    assert.ok((await decryptBuffer(run(AGE, ['-r', a.recipient], plain), parseIdentityFile(fs.readFileSync(keyFile, 'utf8'), keyFile))).equals(plain));
  });

  it('the escape hatch: `age -d -i key.txt OBJ | zstd -d` reads a compressed, encrypted object', { skip: !haveZstd && 'zstd is not installed' }, async () => {
    const k = generateIdentity();
    const keyFile = path.join(dir, 'zkey.txt');
    fs.writeFileSync(keyFile, `${k.identity}\n`);
    const plain = Buffer.from('WAL '.repeat(300_000));
    const obj = path.join(dir, 'wal.zst.age');
    fs.writeFileSync(obj, await encryptBuffer(zlib.zstdCompressSync(plain), [parseRecipient(k.recipient)]));
    const out = run('/bin/sh', ['-c', `age -d -i '${keyFile}' '${obj}' | zstd -d`]);
    assert.ok(out.equals(plain));
  });

  it('age -d rejects a walship object with one flipped bit, as walship does', async () => {
    const k = generateIdentity();
    const keyFile = path.join(dir, 'flip-key.txt');
    fs.writeFileSync(keyFile, `${k.identity}\n`);
    const enc = await encryptBuffer(crypto.randomBytes(70_000), [parseRecipient(k.recipient)]);
    enc[enc.length - 30] = (enc[enc.length - 30] as number) ^ 1;
    const obj = path.join(dir, 'flip.age');
    fs.writeFileSync(obj, enc);
    assert.notEqual(spawnSync(AGE, ['-d', '-i', keyFile, obj]).status, 0);
    await assert.rejects(decryptBuffer(enc, [parseIdentity(k.identity)]), (e: unknown) => e instanceof WalshipError && e.exitCode === ExitCode.integrity);
  });

  describe('scrypt through a pty', { skip: !haveScript && 'script(1) is not installed' }, () => {
    it('objects made by `age -p` decrypt with walship', async () => {
      const plainFile = path.join(dir, 'p-plain');
      const plain = crypto.randomBytes(150_000);
      fs.writeFileSync(plainFile, plain);
      const out = path.join(dir, 'p.age');
      runWithTty(['-p', '-o', out, plainFile], `${PASSPHRASE}\n${PASSPHRASE}\n`);
      const enc = fs.readFileSync(out);
      assert.match(enc.toString('latin1', 0, 80), /\n-> scrypt \S+ 18\n/);
      assert.ok((await decryptBuffer(enc, [scryptIdentity(PASSPHRASE)])).equals(plain));
      await assert.rejects(decryptBuffer(enc, [scryptIdentity('wrong')]), (e: unknown) => e instanceof WalshipError && e.exitCode === ExitCode.integrity);
    });

    it('walship passphrase objects (work factor 18) decrypt with `age -d`', async () => {
      const plain = crypto.randomBytes(150_000);
      const obj = path.join(dir, 'wp.age');
      fs.writeFileSync(obj, await encryptBuffer(plain, [scryptRecipient(PASSPHRASE)]));
      const out = path.join(dir, 'wp.out');
      runWithTty(['-d', '-o', out, obj], `${PASSPHRASE}\n`);
      assert.ok(fs.readFileSync(out).equals(plain));
    });
  });
});

describe('age interop: age-encryption (typage)', () => {
  it('walship-encrypted objects decrypt with typage', async () => {
    const identity = await typageGenerateIdentity();
    const recipient = await identityToRecipient(identity);
    for (const size of SIZES) {
      const plain = crypto.randomBytes(size);
      const enc = await encryptBuffer(plain, [parseRecipient(recipient), parseRecipient(generateIdentity().recipient)]);
      const d = new Decrypter();
      d.addIdentity(identity);
      assert.ok(Buffer.from(await d.decrypt(enc)).equals(plain), `size ${size}`);
    }
  });

  it('typage-encrypted objects decrypt with walship', async () => {
    const k = generateIdentity();
    for (const size of SIZES) {
      const plain = crypto.randomBytes(size);
      const e = new Encrypter();
      e.addRecipient(generateIdentity().recipient);
      e.addRecipient(k.recipient);
      const enc = Buffer.from(await e.encrypt(plain));
      assert.ok((await decryptBuffer(enc, [parseIdentity(k.identity)])).equals(plain), `size ${size}`);
    }
  });

  it('typage and walship agree on identity -> recipient', async () => {
    const k = generateIdentity();
    assert.equal(await identityToRecipient(k.identity), k.recipient);
    const t = await typageGenerateIdentity();
    assert.equal(parseIdentity(t).recipient().toString(), await identityToRecipient(t));
  });

  it('scrypt both ways', async () => {
    const plain = crypto.randomBytes(80_000);
    const e = new Encrypter();
    e.setPassphrase(PASSPHRASE);
    e.setScryptWorkFactor(12);
    const fromTypage = Buffer.from(await e.encrypt(plain));
    assert.ok((await decryptBuffer(fromTypage, [scryptIdentity(PASSPHRASE)])).equals(plain));

    const fromWalship = await encryptBuffer(plain, [scryptRecipient(PASSPHRASE, 12)]);
    const d = new Decrypter();
    d.addPassphrase(PASSPHRASE);
    assert.ok(Buffer.from(await d.decrypt(fromWalship)).equals(plain));
  });

  it('typage rejects a walship object with a flipped header bit, as walship does', async () => {
    const identity = await typageGenerateIdentity();
    const enc = await encryptBuffer(Buffer.from('hello'), [parseRecipient(await identityToRecipient(identity))]);
    const at = enc.indexOf('\n---') - 3;
    enc[at] = (enc[at] as number) ^ 1;
    const d = new Decrypter();
    d.addIdentity(identity);
    await assert.rejects(d.decrypt(enc));
  });
});
