#!/bin/sh
# The compose demo's scheduler: once PostgreSQL answers, take a base backup, a logical dump of the
# whole cluster and apply retention, then again every BACKUP_INTERVAL seconds (default: daily).
# On a real host this is two cron lines (see the README); a failure is logged and retried next round.
set -u
interval=${BACKUP_INTERVAL:-86400}
retain=${BACKUP_RETAIN:-7}
until pg_isready -q; do sleep 2; done
while :; do
  walship backup-push || echo "walship-backup-loop: backup-push failed (exit $?)" >&2
  walship dump-push --all || echo "walship-backup-loop: dump-push --all failed (exit $?)" >&2
  walship delete retain "$retain" --confirm || echo "walship-backup-loop: delete retain $retain failed (exit $?)" >&2
  sleep "$interval"
done
