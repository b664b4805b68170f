#!/usr/bin/env bash
# An example cutover for one database, after `pgferry init` and `pgferry sync`.
# Adapt the hooks to your environment; docs/cutover-runbook.md explains each step.
#
#   SOURCE=postgresql://admin@old-db/shop TARGET=postgresql://admin@new-db/shop scripts/cutover-example.sh
#
# Passwords come from ~/.pgpass (or PGPASSFILE / PGPASSWORD), never from these
# URLs: command lines are visible to every user of the machine.
#
# Optional settings (environment):
#   PGFERRY               how to run pgferry (default: pgferry)
#   PGFERRY_STATE_DIR     init's state directory (default ./.pgferry)
#   STOP_APP              shell command that stops the application's writes (maintenance mode)
#   SWITCH_APP            shell command that points the application at the target
#   RESUME_APP_ON_SOURCE  shell command that lets the application write to the source again (rollback)
#   MAX_WAIT              seconds to wait for the target to catch up (default 300)
#
# Exit codes: 0 switched; 1 not switched (rolled back: the source takes writes again); 2 usage.
set -euo pipefail

PGFERRY=${PGFERRY:-pgferry}
MAX_WAIT=${MAX_WAIT:-300}
: "${SOURCE:?set SOURCE to the source connection string (no password in it)}"
: "${TARGET:?set TARGET to the target connection string (no password in it)}"
export PGFERRY_SOURCE="$SOURCE" PGFERRY_TARGET="$TARGET"

step() { printf '\n== %s\n' "$*"; }
# Our own statements must run even when the fence makes new sessions read-only.
src_sql() { PGOPTIONS="-c default_transaction_read_only=off" psql -X -q -v ON_ERROR_STOP=1 -v db="$DB" -d "$SOURCE" "$@"; }

DB=$(psql -X -At -v ON_ERROR_STOP=1 -d "$SOURCE" -c 'SELECT current_database()')

step "1. replication is healthy and close behind"
if ! $PGFERRY status --max-lag 16MB,30s; then
  echo "replication is not healthy: fix it before the cutover (nothing was changed)"
  exit 1
fi

fenced=0
rollback() {
  step "rollback: the source takes writes again"
  if [ "$fenced" = 1 ]; then
    echo 'ALTER DATABASE :"db" RESET default_transaction_read_only;' | src_sql
  fi
  if [ -n "${RESUME_APP_ON_SOURCE:-}" ]; then bash -c "$RESUME_APP_ON_SOURCE"; fi
  echo "cutover abandoned; replication keeps running, try again later"
}
trap 'rollback; exit 1' ERR INT TERM

step "2. fence: stop writes to the source"
if [ -n "${STOP_APP:-}" ]; then bash -c "$STOP_APP"; fi
# New sessions are read-only; existing client sessions are ended (the subscription's walsender is not a client).
echo 'ALTER DATABASE :"db" SET default_transaction_read_only = on;' | src_sql
fenced=1
src_sql -At -c "SELECT count(pg_terminate_backend(pid)) || ' sessions ended'
                  FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"

step "3. wait until the target has replayed everything"
deadline=$((SECONDS + MAX_WAIT))
until $PGFERRY status --max-lag 0B >/dev/null 2>&1; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    $PGFERRY status || true
    echo "the target did not catch up within ${MAX_WAIT}s"
    false
  fi
  sleep 1
done
$PGFERRY status

step "4. sequences: logical replication does not carry them"
$PGFERRY sequences

step "5. verify: the switch happens only if every table is equal"
if ! $PGFERRY verify; then
  echo "verify found differences"
  false
fi

trap - ERR INT TERM
step "6. switch the application to the target"
if [ -n "${SWITCH_APP:-}" ]; then bash -c "$SWITCH_APP"; fi

step "7. cleanup: drop the subscription, publication and slot"
$PGFERRY cleanup --yes
echo
echo "cutover done: the target is primary; the source stays read-only (ALTER DATABASE $DB RESET default_transaction_read_only to undo)"
