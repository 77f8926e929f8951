/**
 * Lookahead push under kill -9 (issue 7 item 7): `wal-push` is killed in the middle of a batch
 * (after some lookahead files were marked, while others are uploading). Then:
 * - no false completion: every marker in pg_wal/walship/archived names an object that is in the
 *   repository and decodes to exactly the local WAL file;
 * - no loss: PostgreSQL's archiver, run again over every .ready file, gets exit 0 for each, and
 *   every file is then in the repository with its exact bytes; no marker is left behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { decodeObject } from '../../src/codec/codec.ts';
import { requireBuiltCli, runWalship, walshipBin } from '../helpers/cli.ts';
import { makeSegment, tempDir, writeWalFile, type WalSegment } from '../helpers/wal-files.ts';

requireBuiltCli();

const count = 12;

function pgWalWith(dir: string, segments: WalSegment[]): string {
  const walDir = join(dir, 'pgdata', 'pg_wal');
  mkdirSync(join(walDir, 'archive_status'), { recursive: true });
  for (const s of segments) {
    writeWalFile(walDir, s);
    writeFileSync(join(walDir, 'archive_status', `${s.name}.ready`), '');
  }
  return walDir;
}

async function stored(repo: string, name: string): Promise<Buffer> {
  return buffer(decodeObject(createReadStream(join(repo, 'wal', name)), undefined, name));
}

const markersOf = (walDir: string) => (existsSync(join(walDir, 'walship', 'archived')) ? readdirSync(join(walDir, 'walship', 'archived')) : []);

describe('wal-push lookahead killed with SIGKILL mid-batch', () => {
  // Kill points: as soon as the first marker appears, after a few markers, and before any marker.
  for (const killAt of [1, 4, 0]) {
    test(`kill after ${killAt} marker(s), then PostgreSQL's calls again`, { timeout: 180_000 }, async () => {
      const tmp = tempDir('lookahead-kill');
      try {
        const segments = Array.from({ length: count }, (_, i) => makeSegment({ segNo: BigInt(i + 1), seed: `kill-${killAt}-${i}` }));
        const walDir = pgWalWith(tmp.path, segments);
        const pgdata = join(tmp.path, 'pgdata');
        const repo = join(tmp.path, 'repo');
        mkdirSync(repo);
        const env = { PATH: process.env.PATH, WALSHIP_STORAGE: `file://${repo}`, WALSHIP_LOOKAHEAD: String(count), WALSHIP_UPLOAD_CONCURRENCY: '3' };

        const child = spawn(walshipBin, ['wal-push', `pg_wal/${segments[0]!.name}`], { cwd: pgdata, env, stdio: 'ignore' });
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        const started = Date.now();
        let killedWith = -1;
        for (;;) {
          const marked = markersOf(walDir).length;
          const stop = killAt === 0 ? existsSync(join(repo, 'wal')) && Date.now() - started > 150 : marked >= killAt;
          if (stop || child.exitCode !== null) {
            killedWith = marked;
            child.kill('SIGKILL');
            break;
          }
          await sleep(2);
        }
        await exited;
        assert.ok(killedWith < count - 1, `the batch was still running when killed (${killedWith} marked)`);

        // No false completion: each marker vouches for a durable, decodable, identical object.
        const bytesOf = new Map(segments.map((s) => [s.name, s.bytes]));
        for (const name of markersOf(walDir)) {
          assert.ok(existsSync(join(repo, 'wal', name)), `marker ${name} without an object`);
          assert.ok((await stored(repo, name)).equals(bytesOf.get(name)!), `marker ${name}: object differs`);
        }

        // No loss: the archiver asks again for every ready file, in order.
        for (const s of segments) {
          const r = await runWalship(['wal-push', `pg_wal/${s.name}`], { cwd: pgdata, env, timeoutMs: 120_000 });
          assert.equal(r.code, 0, `wal-push ${s.name}: ${r.stderr}`);
          renameSync(join(walDir, 'archive_status', `${s.name}.ready`), join(walDir, 'archive_status', `${s.name}.done`));
        }
        for (const s of segments) assert.ok((await stored(repo, s.name)).equals(s.bytes), `${s.name} differs in the repository`);
        assert.deepEqual(markersOf(walDir), [], 'every marker was consumed');
        const visible = readdirSync(join(repo, 'wal')).filter((f) => !f.startsWith('.tmp.'));
        assert.deepEqual(visible.sort(), segments.map((s) => s.name).sort());
      } finally {
        tmp.remove();
      }
    });
  }

  test('a marker older than its WAL file is not trusted', { timeout: 60_000 }, async () => {
    const tmp = tempDir('lookahead-stale');
    try {
      const [a] = [makeSegment({ segNo: 5n, seed: 'stale' })];
      const walDir = pgWalWith(tmp.path, [a!]);
      const repo = join(tmp.path, 'repo');
      mkdirSync(repo);
      mkdirSync(join(walDir, 'walship', 'archived'), { recursive: true });
      writeFileSync(join(walDir, 'walship', 'archived', a!.name), '');
      // The WAL file is rewritten after the marker: the marker cannot vouch for it.
      await sleep(20);
      writeWalFile(walDir, a!);
      const r = await runWalship(['wal-push', `pg_wal/${a!.name}`], { cwd: join(tmp.path, 'pgdata'), env: { WALSHIP_STORAGE: `file://${repo}` } });
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await stored(repo, a!.name)).equals(a!.bytes), 'pushed for real');
    } finally {
      tmp.remove();
    }
  });
});
