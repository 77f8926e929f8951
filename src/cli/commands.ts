// Every command, one file each. A command file only declares flags and help; its work is imported
// lazily when it runs, so listing all of them here costs wal-push nothing.
import type { Command } from 'commander';
import * as walPush from './wal-push.ts';
import * as walFetch from './wal-fetch.ts';
import * as backupPush from './backup-push.ts';
import * as backupList from './backup-list.ts';
import * as backupFetch from './backup-fetch.ts';
import * as restore from './restore.ts';
import * as keygen from './keygen.ts';
import * as dumpPush from './dump-push.ts';
import * as dumpList from './dump-list.ts';
import * as dumpFetch from './dump-fetch.ts';
import * as deleteCommand from './delete.ts';
import * as backupMark from './backup-mark.ts';
import * as walShow from './wal-show.ts';
import * as walVerify from './wal-verify.ts';
import * as check from './check.ts';
import * as status from './info.ts';
import * as daemon from './daemon.ts';

export const commands: { register(program: Command): void }[] = [walPush, walFetch, backupPush, backupList, backupFetch, restore, keygen, dumpPush, dumpList, dumpFetch, daemon, deleteCommand, backupMark, walShow, walVerify, check, status];
