/**
 * archive_command may run walship twice, into two repositories ('walship -c a.json wal-push %p &&
 * walship -c b.json wal-push %p'). A lookahead marker written by one of them must never answer the
 * other's call: each repository must end up with every segment.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { requireBuiltCli, runWalship } from '../helpers/cli.ts';
import { makeSegment, tempDir, writeWalFile } from '../helpers/wal-files.ts';

requireBuiltCli();
const scratch = tempDir('lookahead-destinations');
after(() => scratch.remove());

test('two walship calls in one archive_command: a marker vouches only for the destination that wrote it', { timeout: 60_000 }, async () => {
  const pgdata = join(scratch.path, 'pgdata');
  const walDir = join(pgdata, 'pg_wal');
  mkdirSync(join(walDir, 'archive_status'), { recursive: true });
  const segments = [1n, 2n, 3n, 4n].map((segNo) => makeSegment({ segmentSize: 1 << 20, segNo, seed: `dest-${segNo}` }));
  const ready = (s: (typeof segments)[0]) => {
    writeWalFile(walDir, s);
    writeFileSync(join(walDir, 'archive_status', `${s.name}.ready`), '');
  };
  const destinations = ['a', 'b'].map((label) => {
    const repo = join(scratch.path, `repo-${label}`);
    mkdirSync(repo);
    const config = join(scratch.path, `${label}.json`);
    writeFileSync(config, JSON.stringify({ storage: `file://${repo}`, lookahead: 16 }));
    return { repo, config };
  });
  const [a, b] = destinations as [(typeof destinations)[0], (typeof destinations)[0]];
  const archive = async (d: typeof a, name: string) => {
    const r = await runWalship(['--config', d.config, 'wal-push', `pg_wal/${name}`], { cwd: pgdata });
    assert.equal(r.code, 0, r.stderr);
  };
  // PostgreSQL's archiver with archive_command = 'A && B'. While A archives the first segment,
  // PostgreSQL finishes three more; B's lookahead then stores them in B and marks them.
  const [first, ...rest] = segments as [(typeof segments)[0], ...typeof segments];
  ready(first);
  await archive(a, first.name);
  for (const s of rest) ready(s);
  await archive(b, first.name);
  renameSync(join(walDir, 'archive_status', `${first.name}.ready`), join(walDir, 'archive_status', `${first.name}.done`));
  // A's calls for those must not take B's markers for their own.
  for (const s of rest) {
    await archive(a, s.name);
    await archive(b, s.name);
    renameSync(join(walDir, 'archive_status', `${s.name}.ready`), join(walDir, 'archive_status', `${s.name}.done`));
  }
  for (const d of destinations) {
    for (const s of segments) assert.ok(existsSync(join(d.repo, 'wal', s.name)), `${s.name} missing from ${d.repo}`);
  }
});
