import type { Command } from 'commander';
import { action } from './context.ts';

/**
 * `walship keygen -o FILE`: a new age X25519 identity, written the way age-keygen writes it
 * (`# created:` and `# public key:` comments, then the AGE-SECRET-KEY-1 line), so `age -d -i FILE`
 * reads it too.
 *
 * Decisions:
 * - `-o` is required. Printing a secret key to stdout by default (as age-keygen does) invites
 *   `walship keygen > key.txt`, which the shell creates with the umask's mode (often 0644);
 *   `-o -` asks for stdout explicitly (for piping into a secret manager).
 * - The file is created with O_EXCL and mode 0600 and never overwritten: an existing file is
 *   "refused" (exit 3), since losing an identity loses every object encrypted to it.
 * - stdout gets only the public recipient (or, with --json, recipient + fingerprint + path), so
 *   `RECIPIENT=$(walship keygen -o key.txt)` works. No secret ever goes to a log or to --json.
 */
export function register(program: Command): void {
  program
    .command('keygen')
    .description('create an age identity (secret key) for reading encrypted objects; prints its recipient (public key) for WALSHIP_RECIPIENTS')
    .requiredOption('-o, --output <file>', "identity file to create (mode 0600, never overwritten), or '-' to print the identity on stdout")
    .option('--json', 'print {"recipient", "fingerprint", "identityFile"} as JSON instead of the bare recipient')
    .addHelpText(
      'after',
      `
With -o FILE, stdout gets only the recipient (age1...): RECIPIENT=$(walship keygen -o key.txt).
The file has the format age-keygen writes; 'age -d -i FILE' reads objects encrypted to it.
Keep it off the database host: pushing needs only the recipient; fetching needs the identity.
With -o -, stdout gets the identity file's text (e.g. for a secret manager) and stderr the recipient.

Exit codes: 0 created; 2 bad flags, missing or unwritable directory; 3 FILE already exists (never overwritten).
`,
    )
    .action(
      action('keygen', async () => {
        const flags = program.commands.find((c) => c.name() === 'keygen')!.opts<{ output: string; json?: boolean }>();
        await keygen(flags.output, Boolean(flags.json));
      }),
    );
}

async function keygen(output: string, json: boolean): Promise<void> {
  const { usageError, refusedError } = await import('../errors.ts');
  const { log } = await import('../log.ts');
  if (output === '') throw usageError('-o needs a file name (or - for stdout)');
  if (output === '-' && json) throw usageError('--json cannot be combined with -o - (stdout carries the identity)');

  const { generateIdentity, parseRecipient, recipientFingerprint } = await import('../codec/age/index.ts');
  const { identity, recipient } = generateIdentity();
  const fingerprint = recipientFingerprint(parseRecipient(recipient));
  const created = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const text = `# created: ${created}\n# public key: ${recipient}\n${identity}\n`;

  if (output === '-') {
    await writeStdout(text);
    log.info('created an identity (printed on stdout; store it where only the restoring side can read it)', { recipient, fingerprint });
    return;
  }

  const { open } = await import('node:fs/promises');
  const { dirname, resolve } = await import('node:path');
  const { syncDirectory } = await import('../fsutil.ts');
  const path = resolve(output);
  let handle: import('node:fs/promises').FileHandle;
  try {
    // 'wx' = O_CREAT|O_EXCL: fails on any existing name, a dangling symlink included.
    handle = await open(path, 'wx', 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw refusedError(`${path} already exists; walship never overwrites an identity file (objects encrypted to it would be lost). Move it away or choose another -o`);
    const reason = code === 'ENOENT' ? 'no such directory' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (code ?? 'cannot create it');
    throw usageError(`cannot create ${path}: ${reason}`);
  }
  try {
    await handle.chmod(0o600); // exactly 0600 whatever the umask
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await syncDirectory(dirname(path));
  log.info('created identity file (mode 0600); give its recipient to WALSHIP_RECIPIENTS', { file: path, recipient, fingerprint });
  await writeStdout(json ? `${JSON.stringify({ recipient, fingerprint, identityFile: path })}\n` : `${recipient}\n`);
}

function writeStdout(text: string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(text, (err) => (err ? reject(err) : resolve())));
}
