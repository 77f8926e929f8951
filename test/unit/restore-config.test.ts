import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { remapTablespaceMap } from '../../src/backup/fetch.ts';
import { confValue, recoverySettings, restoreCommand, shellQuote, writeRecoveryConfig } from '../../src/restore/recovery-conf.ts';
import { parseTarget, parseTargetTime, parseTargetTimeline } from '../../src/restore/target.ts';

const root = await mkdtemp(join(tmpdir(), 'walship-recovery-conf-'));
after(() => rm(root, { recursive: true, force: true }));

test('target times need a zone and keep PostgreSQL-readable text', () => {
  const cases: [string, string][] = [
    ['2026-11-27 14:05:00+00', '2026-11-27T14:05:00.000Z'],
    ['2026-11-27T14:05:00Z', '2026-11-27T14:05:00.000Z'],
    ['2026-11-27 14:05:00.123456+00', '2026-11-27T14:05:00.123Z'],
    ['2026-11-27 16:05+02', '2026-11-27T14:05:00.000Z'],
    ['2026-11-27 09:35:00-04:30', '2026-11-27T14:05:00.000Z'],
    ['2026-11-27 14:05:00 UTC', '2026-11-27T14:05:00.000Z'],
  ];
  for (const [text, iso] of cases) assert.equal(parseTargetTime(text).toISOString(), iso, text);
  for (const bad of ['2026-11-27 14:05:00', 'yesterday', '2026-02-30 10:00:00Z', '2026-11-27 25:00:00Z', '1700000000']) {
    assert.throws(() => parseTargetTime(bad), (err: Error & { exitCode?: number }) => err.exitCode === 2, bad);
  }
  assert.deepEqual(parseTarget({ targetTime: ' 2026-11-27 14:05:00+00 ' }), { kind: 'time', text: '2026-11-27 14:05:00+00', time: new Date('2026-11-27T14:05:00Z') });
});

test('one target at most; LSN and xid are validated', () => {
  assert.throws(() => parseTarget({ targetTime: '2026-11-27 14:05:00Z', immediate: true }), /give one recovery target, not --target-time and --immediate/);
  assert.throws(() => parseTarget({ targetLsn: 'nope' }), /--target-lsn/);
  assert.throws(() => parseTarget({ targetXid: '12a' }), /--target-xid/);
  assert.deepEqual(parseTarget({}), { kind: 'latest' });
  assert.deepEqual(parseTarget({ targetLsn: '0/16B3748' }), { kind: 'lsn', lsn: 0x16b3748n });
  assert.deepEqual(parseTargetTimeline('3'), { kind: 'number', timeline: 3 });
  assert.deepEqual(parseTargetTimeline(undefined), { kind: 'latest' });
  assert.throws(() => parseTargetTimeline('newest'), /expected latest, current or a timeline number/);
});

test('recovery settings: the chosen target last, the others cleared before it', () => {
  for (const flags of [{ targetTime: '2026-11-27 14:05:00Z' }, { targetLsn: '0/5000000' }, { targetXid: '7' }, { targetName: 'p' }, { immediate: true }]) {
    const settings = recoverySettings({ restoreCommand: 'cmd', target: parseTarget(flags), action: 'promote' });
    const targets = settings.filter(([k]) => k.startsWith('recovery_target') && k !== 'recovery_target_action');
    assert.equal(targets.length, 5);
    assert.deepEqual(targets.slice(0, 4).map(([, v]) => v), ['', '', '', '']);
    assert.notEqual(targets[4]![1], '');
    assert.deepEqual(settings.at(-1), ['recovery_target_action', 'promote']);
  }
  const latest = recoverySettings({ restoreCommand: 'cmd', target: { kind: 'latest' }, action: 'promote', timeline: 'latest' });
  assert.ok(latest.every(([k, v]) => !k.startsWith('recovery_target_') || k === 'recovery_target_timeline' || v === ''));
  assert.ok(!latest.some(([k]) => k === 'recovery_target_action'));
});

test('restore_command: absolute executable, the same config, environment settings, % and shell metacharacters escaped', () => {
  assert.equal(restoreCommand({ executable: '/opt/walship/bin/walship', configPath: '/etc/walship/walship.json', standby: false }), '/opt/walship/bin/walship --config /etc/walship/walship.json wal-fetch %f %p');
  assert.equal(restoreCommand({ executable: '/opt/walship/bin/walship', standby: true }), '/opt/walship/bin/walship wal-fetch --standby %f %p');
  const tricky = restoreCommand({
    executable: "/opt/wal ship/bin/walship",
    configPath: "/etc/it's/100%.json",
    environment: [['WALSHIP_STORAGE', 'file:///backups/a b%20c']],
    standby: false,
  });
  assert.equal(tricky, "WALSHIP_STORAGE='file:///backups/a b%%20c' '/opt/wal ship/bin/walship' --config '/etc/it'\\''s/100%%.json' wal-fetch %f %p");
  // What the shell makes of it once PostgreSQL has replaced %% by % (and %f, %p): the original words.
  const expanded = tricky.replace('%f', 'F').replace('%p', 'P').replace(/%%/g, '%');
  const words = execFileSync('/bin/sh', ['-c', `printf '%s\\n' ${expanded.replace(/^WALSHIP_STORAGE=/, '')}`], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(words, ['file:///backups/a b%20c', '/opt/wal ship/bin/walship', '--config', "/etc/it's/100%.json", 'wal-fetch', 'F', 'P']);
});

test('shellQuote round-trips any word through /bin/sh', () => {
  fc.assert(
    fc.property(fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !s.includes('\0')), (word) => {
      const out = execFileSync('/bin/sh', ['-c', `printf '%s' ${shellQuote(word)}`], { encoding: 'utf8' });
      return out === word;
    }),
    { numRuns: 40 },
  );
  assert.equal(confValue("it's a \\ path"), "'it''s a \\\\ path'");
});

test('postgresql.auto.conf: earlier recovery settings are disabled, the new ones appended, the signal written', async () => {
  const dir = join(root, 'data');
  await (await import('node:fs/promises')).mkdir(dir);
  await writeFile(join(dir, 'postgresql.auto.conf'), "# Do not edit this file manually!\nwork_mem = '64MB'\nrestore_command = 'old'\nrecovery_target_xid = '99'\n");
  const settings = recoverySettings({ restoreCommand: '/w wal-fetch %f %p', target: parseTarget({ targetName: "it's" }), action: 'shutdown' });
  await writeRecoveryConfig(dir, settings, 'recovery', 'walship restore test');
  const text = await readFile(join(dir, 'postgresql.auto.conf'), 'utf8');
  assert.match(text, /^work_mem = '64MB'$/m);
  assert.match(text, /^# restore_command = 'old'  # disabled by walship restore$/m);
  assert.match(text, /^# recovery_target_xid = '99'  # disabled by walship restore$/m);
  assert.match(text, /^restore_command = '\/w wal-fetch %f %p'$/m);
  assert.match(text, /^recovery_target_name = 'it''s'\nrecovery_target_action = 'shutdown'\n$/m);
  assert.equal(await readFile(join(dir, 'recovery.signal'), 'utf8'), '');
});

test('tablespace_map: moved tablespaces get their new path, escaped; others untouched', () => {
  const map = '16389 /srv/old\n16390 /srv/keep\n';
  assert.equal(
    remapTablespaceMap(map, [
      { oid: '16389', original: '/srv/old', location: '/srv/new\\dir' },
      { oid: '16390', original: '/srv/keep', location: '/srv/keep' },
    ]),
    '16389 /srv/new\\\\dir\n16390 /srv/keep\n',
  );
  assert.equal(remapTablespaceMap(map, []), map);
  // A path with an escaped newline is one record.
  const odd = '16389 /srv/odd\\\nname\n16390 /srv/keep\n';
  assert.equal(remapTablespaceMap(odd, [{ oid: '16389', original: '/srv/odd\nname', location: '/new' }]), '16389 /new\n16390 /srv/keep\n');
});
