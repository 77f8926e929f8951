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
  const pgbr: PgBackRest = {
    config,
    stanza: 'bench',
    args: (command, ...rest) => [`--config=${config}`, '--stanza=bench', command, ...rest],
  };
  const r = spawnSync('pgbackrest', [...pgbr.args('stanza-create'), '--no-online'], {
    encoding: 'utf8',
    ...(options.owner ? { uid: options.owner.uid, gid: options.owner.gid } : {}),
  });
  if (r.status !== 0) throw new Error(`pgbackrest stanza-create failed: ${r.stderr}${r.stdout}`);
  return pgbr;
}
