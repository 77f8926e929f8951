/**
 * wal-fetch with prefetch (DESIGN §3 local state), driven as restore_command drives it: one call
 * per segment into pg_wal/RECOVERYXLOG. Checks: the bytes handed over are always the segment's;
 * later segments come from the spool (fetched ahead by the detached prefetcher); a corrupt object
 * is never spooled nor served (the fetch fails under recovery with a status above 125); temp
 * files in the spool are never served; moving to another timeline empties the spool of the old
 * one; removing the data directory stops the prefetcher.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { tellPrefetcher } from '../../src/wal/prefetch.ts';
import { requireBuiltCli, runWalship } from '../helpers/cli.ts';
import { defaultSystemIdentifier, makeSegment, tempDir, writeWalFile } from '../helpers/wal-files.ts';

requireBuiltCli();

async function waitFor(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('wal-fetch prefetch', () => {
  test('serves the right bytes, from the spool when ahead, never a corrupt or partial file', { timeout: 240_000 }, async () => {
    const tmp = tempDir('prefetch');
    try {
      const repo = join(tmp.path, 'repo');
      mkdirSync(repo);
      const source = join(tmp.path, 'source');
      mkdirSync(source);
      const segments = Array.from({ length: 12 }, (_, i) => makeSegment({ segNo: BigInt(i + 1), seed: `prefetch-${i}` }));
      const env = { WALSHIP_STORAGE: `file://${repo}`, WALSHIP_LOOKAHEAD: '0', WALSHIP_PREFETCH: '4', WALSHIP_DOWNLOAD_CONCURRENCY: '2' };
      for (const s of segments) {
        const r = await runWalship(['wal-push', writeWalFile(source, s)], { env });
        assert.equal(r.code, 0, r.stderr);
      }
      // Segment 9's object is damaged in the repository (truncated): it must never be handed over.
      const bad = segments[8]!;
      truncateSync(join(repo, 'wal', bad.name), Math.floor(statSync(join(repo, 'wal', bad.name)).size / 2));

      const pgdata = join(tmp.path, 'pgdata');
      const walDir = join(pgdata, 'pg_wal');
      const spool = join(walDir, 'walship', 'prefetch');
      mkdirSync(walDir, { recursive: true });
      mkdirSync(join(pgdata, 'global'));
      const control = Buffer.alloc(8192);
      control.writeBigUInt64LE(defaultSystemIdentifier, 0);
      writeFileSync(join(pgdata, 'global', 'pg_control'), control);
      const dest = join(walDir, 'RECOVERYXLOG');
      const inSpool = () => (existsSync(spool) ? readdirSync(spool) : []);
      const fetchOne = (name: string) => runWalship(['wal-fetch', name, 'pg_wal/RECOVERYXLOG'], { cwd: pgdata, env, timeoutMs: 60_000 });

      let fromSpool = 0;
      for (const [i, s] of segments.entries()) {
        if (s === bad) break;
        if (i >= 1 && i <= 6) {
          // The prefetcher keeps up to 4 ahead: wait for this one, then it must come from the spool.
          await waitFor(`${s.name} in the spool`, () => existsSync(join(spool, s.name)));
        }
        if (i === 5) {
          // A temp file of the prefetcher (as left by one killed mid-download) is never served.
          writeFileSync(join(spool, `.dl.${segments[6]!.name}`), 'partial');
        }
        const spooled = existsSync(join(spool, s.name));
        const r = await fetchOne(s.name);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(readFileSync(dest).equals(s.bytes), `${s.name}: wrong bytes handed over`);
        if (spooled) {
          fromSpool++;
          assert.ok(!existsSync(join(spool, s.name)), 'handed over by rename');
        }
        // Never more than the window (4) of complete files.
        assert.ok(inSpool().filter((f) => !f.startsWith('.')).length <= 4);
      }
      assert.ok(fromSpool >= 6, `served from the spool: ${fromSpool}`);
      assert.ok(!existsSync(join(spool, bad.name)), 'a corrupt object is never spooled');

      // The damaged segment: the fetch fails as fatal for recovery (above 125), nothing is handed over.
      const beforeBad = readFileSync(dest);
      const r = await fetchOne(bad.name);
      assert.ok(r.code > 125, `exit ${r.code}: ${r.stderr}`);
      assert.ok(readFileSync(dest).equals(beforeBad), 'RECOVERYXLOG untouched');

      // Recovery moves to timeline 2: the spooled files of timeline 1 go.
      await waitFor('files of timeline 1 in the spool', () => inSpool().some((f) => f.startsWith('00000001')));
      const tl2 = makeSegment({ timeline: 2, segNo: 12n, seed: 'tl2' });
      const missing = await fetchOne(tl2.name);
      assert.equal(missing.code, 1, missing.stderr);
      await waitFor('the spool of timeline 1 emptied', () => !inSpool().some((f) => f.startsWith('00000001')), 10_000);

      // The data directory goes away: so does the prefetcher.
      tmp.remove();
      await waitFor('the prefetcher to stop', () => false, 100).catch(() => {});
      let answer: unknown = 'running';
      for (let i = 0; i < 50 && answer !== undefined; i++) {
        await sleep(100);
        answer = await tellPrefetcher(walDir, segments[0]!.name, undefined, 0);
      }
      assert.equal(answer, undefined, 'prefetcher stopped');
    } finally {
      tmp.remove();
    }
  });
});
