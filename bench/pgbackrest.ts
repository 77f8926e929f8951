/**
 * pgBackRest 2.45 (Debian package) as the peer: one stanza per repository directory, created
 * offline from a data directory's pg_control (no server needed), compression as given.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface PgBackRest {
  config: string;
  stanza: string;
  /** Arguments for archive-push / archive-get. */
  args(command: string, ...rest: string[]): string[];
  /**
   * The same repository for another data directory (archive-get must run with the data directory
   * as its working directory, and that must be pg1-path).
   */
  forPgdata(pgdata: string): PgBackRest;
}

export function pgbackrestVersion(): string | undefined {
  const r = spawnSync('pgbackrest', ['version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function setupPgBackRest(
  dir: string,
  pgdata: string,
  options: { compressType: 'zst' | 'lz4' | 'none'; compressLevel?: number; async?: boolean; processMax?: number; owner?: { uid: number; gid: number } },
): PgBackRest {
  fs.mkdirSync(dir, { recursive: true });
  for (const sub of ['repo', 'spool', 'lock', 'log']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
  const config = path.join(dir, 'pgbackrest.conf');
  const lines = [
    '[global]',
    `repo1-path=${path.join(dir, 'repo')}`,
    `spool-path=${path.join(dir, 'spool')}`,
    `lock-path=${path.join(dir, 'lock')}`,
    `log-path=${path.join(dir, 'log')}`,
    'log-level-console=warn',
    'log-level-stderr=warn',
    'log-level-file=off',
    `compress-type=${options.compressType}`,
    ...(options.compressLevel !== undefined ? [`compress-level=${options.compressLevel}`] : []),
    `archive-async=${options.async ? 'y' : 'n'}`,
    `process-max=${options.processMax ?? 1}`,
    '',
    '[bench]',
    `pg1-path=${pgdata}`,
    '',
  ];
  fs.writeFileSync(config, lines.join('\n'));
  if (options.owner) spawnSync('chown', ['-R', `${options.owner.uid}:${options.owner.gid}`, dir]);
  const withConfig = (file: string): PgBackRest => ({
    config: file,
    stanza: 'bench',
    args: (command, ...rest) => [`--config=${file}`, '--stanza=bench', command, ...rest],
    forPgdata(other) {
      const copy = path.join(dir, `pgbackrest-${fs.readdirSync(dir).length}.conf`);
      fs.writeFileSync(copy, lines.map((l) => (l.startsWith('pg1-path=') ? `pg1-path=${other}` : l)).join('\n'));
      return withConfig(copy);
    },
  });
  const pgbr = withConfig(config);
  const r = spawnSync('pgbackrest', [...pgbr.args('stanza-create'), '--no-online'], {
    encoding: 'utf8',
    ...(options.owner ? { uid: options.owner.uid, gid: options.owner.gid } : {}),
  });
  if (r.status !== 0) throw new Error(`pgbackrest stanza-create failed: ${r.stderr}${r.stdout}`);
  return pgbr;
}
