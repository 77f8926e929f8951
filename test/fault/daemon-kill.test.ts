/**
 * The daemon's failure modes (issue 7 item 7):
 * - killed (SIGKILL) while a wal-push request is in progress: the client falls back to pushing
 *   itself and exits 0; the object is there, exactly once, with the right bytes; a new daemon
 *   starts on the stale socket;
 * - one segment pushed at the same time by a client through the daemon and by a client on its
 *   own: both exit 0, one object, right bytes, no temp file left;
 * - a daemon configured for another repository is not used (the client works locally);
 * - SIGTERM finishes the upload in flight before exiting 0; /metrics and `daemon status` answer.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { decodeObject } from '../../src/codec/codec.ts';
import { requireBuiltCli, runWalship, walshipBin } from '../helpers/cli.ts';
import { makeSegment, tempDir, writeWalFile } from '../helpers/wal-files.ts';

requireBuiltCli();

const stored = (repo: string, name: string) => buffer(decodeObject(createReadStream(join(repo, 'wal', name)), undefined, name));

async function startDaemon(env: Record<string, string>, args: string[] = []): Promise<{ child: ChildProcess; stderr: () => string }> {
  const child = spawn(walshipBin, ['daemon', ...args], { env: { PATH: process.env.PATH!, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let text = '';
  child.stderr!.on('data', (b: Buffer) => (text += b.toString()));
  for (let i = 0; i < 200; i++) {
    if (/listening/.test(text)) return { child, stderr: () => text };
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`daemon did not start: ${text}`);
}

const exitOf = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve({ code: child.exitCode, signal: child.signalCode })
    : new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));

/** Poll `walship daemon status` until a push is in flight; returns the in-flight count seen. */
async function waitForInFlight(env: Record<string, string>, timeoutMs: number): Promise<number> {
  const start = Date.now();
  for (;;) {
    const r = await runWalship(['daemon', 'status', '--json'], { env });
    const inFlight = r.code === 0 ? (JSON.parse(r.stdout) as { inFlight: number }).inFlight : 0;
    if (inFlight > 0 || Date.now() - start > timeoutMs) return inFlight;
    await sleep(20);
  }
}

function setup(label: string) {
  const tmp = tempDir(label);
  const walDir = join(tmp.path, 'pgdata', 'pg_wal');
  mkdirSync(join(walDir, 'archive_status'), { recursive: true });
  const repo = join(tmp.path, 'repo');
  mkdirSync(repo);
  return { tmp, walDir, pgdata: join(tmp.path, 'pgdata'), repo, socket: join(tmp.path, 'd.sock') };
}

describe('walship daemon faults', () => {
  test('killed mid-request: the client falls back and succeeds; a new daemon replaces the stale socket', { timeout: 180_000 }, async () => {
    const { tmp, walDir, pgdata, repo, socket } = setup('daemon-kill');
    try {
      const seg = makeSegment({ segNo: 3n, seed: 'daemon-kill' });
      writeWalFile(walDir, seg);
      // zstd level 19 makes the push take seconds: time to kill the daemon while it works.
      const env = { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_DAEMON_SOCKET: socket, WALSHIP_METRICS_ADDRESS: 'off', WALSHIP_COMPRESSION_LEVEL: '19', WALSHIP_LOOKAHEAD: '0' };
      const daemon = await startDaemon(env);
      assert.equal(statSync(socket).mode & 0o777, 0o600, 'socket is 0600');
      const client = runWalship(['wal-push', `pg_wal/${seg.name}`], { cwd: pgdata, env: { ...env, WALSHIP_LOG_LEVEL: 'debug' }, timeoutMs: 150_000 });
      // Wait until the daemon works on the request (compressing at level 19 takes seconds), then kill it.
      assert.equal(await waitForInFlight(env, 30_000), 1, 'the daemon had the push in flight');
      daemon.child.kill('SIGKILL');
      await exitOf(daemon.child);
      const r = await client;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /no walship daemon answered; working locally/, 'the client fell back');
      assert.ok((await stored(repo, seg.name)).equals(seg.bytes));
      assert.ok(existsSync(socket), 'the killed daemon left its socket file');

      const again = await startDaemon(env);
      const status = await runWalship(['daemon', 'status', '--json'], { env });
      assert.equal(status.code, 0, status.stderr);
      assert.equal(JSON.parse(status.stdout).pid, again.child.pid);
      again.child.kill('SIGTERM');
      assert.deepEqual(await exitOf(again.child), { code: 0, signal: null });
      assert.ok(!existsSync(socket), 'a clean stop removes the socket');
    } finally {
      tmp.remove();
    }
  });

  test('one segment pushed by a client through the daemon and by a client on its own at once', { timeout: 120_000 }, async () => {
    const { tmp, walDir, pgdata, repo, socket } = setup('daemon-race');
    try {
      const env = { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_DAEMON_SOCKET: socket, WALSHIP_METRICS_ADDRESS: 'off', WALSHIP_LOOKAHEAD: '0' };
      const local = { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_LOOKAHEAD: '0' };
      const daemon = await startDaemon(env);
      try {
        for (let i = 0; i < 4; i++) {
          const seg = makeSegment({ segNo: BigInt(10 + i), seed: `race-${i}` });
          writeWalFile(walDir, seg);
          const [a, b] = await Promise.all([
            runWalship(['wal-push', `pg_wal/${seg.name}`], { cwd: pgdata, env, timeoutMs: 60_000 }),
            runWalship(['wal-push', `pg_wal/${seg.name}`], { cwd: pgdata, env: local, timeoutMs: 60_000 }),
          ]);
          assert.equal(a.code, 0, `via daemon: ${a.stderr}`);
          assert.equal(b.code, 0, `local: ${b.stderr}`);
          assert.ok((await stored(repo, seg.name)).equals(seg.bytes));
        }
        const files = readdirSync(join(repo, 'wal'));
        assert.equal(files.filter((f) => f.startsWith('.tmp.')).length, 0, 'no temp file left');
        assert.equal(files.length, 4, 'one object per segment');
      } finally {
        daemon.child.kill('SIGTERM');
        await exitOf(daemon.child);
      }
    } finally {
      tmp.remove();
    }
  });

  test('a daemon with other repository settings is not used', { timeout: 60_000 }, async () => {
    const { tmp, walDir, pgdata, repo, socket } = setup('daemon-other');
    try {
      const otherRepo = join(tmp.path, 'other');
      mkdirSync(otherRepo);
      const daemon = await startDaemon({ WALSHIP_STORAGE: `file://${otherRepo}`, WALSHIP_DAEMON_SOCKET: socket, WALSHIP_METRICS_ADDRESS: 'off' });
      try {
        const seg = makeSegment({ segNo: 20n, seed: 'other' });
        writeWalFile(walDir, seg);
        const r = await runWalship(['wal-push', `pg_wal/${seg.name}`], { cwd: pgdata, env: { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_DAEMON_SOCKET: socket } });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /declined/);
        assert.ok((await stored(repo, seg.name)).equals(seg.bytes));
        assert.ok(!existsSync(join(otherRepo, 'wal', seg.name)), "nothing went to the daemon's repository");
      } finally {
        daemon.child.kill('SIGTERM');
        await exitOf(daemon.child);
      }
    } finally {
      tmp.remove();
    }
  });

  test('SIGTERM finishes the upload in flight; /metrics and status report it', { timeout: 120_000 }, async () => {
    const { tmp, walDir, pgdata, repo, socket } = setup('daemon-term');
    try {
      const port = 20000 + Math.floor(Math.random() * 20000);
      const env = {
        WALSHIP_STORAGE: `file://${repo}`,
        WALSHIP_DAEMON_SOCKET: socket,
        WALSHIP_METRICS_ADDRESS: `127.0.0.1:${port}`,
        WALSHIP_COMPRESSION_LEVEL: '19',
      };
      const daemon = await startDaemon(env, ['--pgdata', pgdata]);
      const seg = makeSegment({ segNo: 30n, seed: 'term' });
      writeWalFile(walDir, seg);
      // PostgreSQL marks it ready: the daemon archives it on its own (slowly, level 19).
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(walDir, 'archive_status', `${seg.name}.ready`), '');
      assert.equal(await waitForInFlight(env, 30_000), 1, 'the daemon archives it');
      const inFlight = await fetch(`http://127.0.0.1:${port}/metrics`).then((res) => res.text());
      assert.match(inFlight, /walship_wal_in_flight 1/);
      daemon.child.kill('SIGTERM');
      assert.deepEqual(await exitOf(daemon.child), { code: 0, signal: null });
      assert.ok((await stored(repo, seg.name)).equals(seg.bytes), 'the upload in flight was finished');
      assert.ok(existsSync(join(walDir, 'walship', 'archived', seg.name)), 'and recorded with a marker');
      // PostgreSQL's call now returns at once, from the marker.
      const r = await runWalship(['wal-push', `pg_wal/${seg.name}`], { cwd: pgdata, env: { WALSHIP_STORAGE: `file://${repo}` } });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!existsSync(join(walDir, 'walship', 'archived', seg.name)), 'the marker was consumed');
    } finally {
      tmp.remove();
    }
  });
});
