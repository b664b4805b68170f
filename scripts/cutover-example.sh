#!/usr/bin/env bash
# An example cutover for one database, after `pgferry init` and `pgferry sync`.
# `pgferry cutover` does the work (fence, catch-up to the fence LSN, sequences,
# verify gate, hand-over); this script adds the application hooks around it.
# docs/cutover-runbook.md explains each step.
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
#   MAX_WAIT              seconds to wait for the target to apply the fence position (default 300)
#   VERIFY                the gate: quick (default), full or none
#   REVERSE               1: replicate writes on the target back to the old source after the switch
#
# Exit codes: 0 switched; 1 not switched (rolled back: the source takes writes again);
# 2 refused before anything changed; 3 cannot connect; 4 failed part-way (read the message:
# run the script again to continue, or `pgferry cutover --abort` to lift the fence).
set -euo pipefail

PGFERRY=${PGFERRY:-pgferry}
MAX_WAIT=${MAX_WAIT:-300}
VERIFY=${VERIFY:-quick}
: "${SOURCE:?set SOURCE to the source connection string (no password in it)}"
: "${TARGET:?set TARGET to the target connection string (no password in it)}"
export PGFERRY_SOURCE="$SOURCE" PGFERRY_TARGET="$TARGET"

step() { printf '\n== %s\n' "$*"; }
resume_app() { if [ -n "${RESUME_APP_ON_SOURCE:-}" ]; then bash -c "$RESUME_APP_ON_SOURCE"; fi; }

step "1. replication is healthy and close behind"
if ! $PGFERRY status --max-lag 16MB,30s; then
  echo "replication is not healthy: fix it before the cutover (nothing was changed)"
  exit 1
fi

step "2. stop the application's writes"
if [ -n "${STOP_APP:-}" ]; then bash -c "$STOP_APP"; fi

step "3-5. pgferry cutover: fence, catch up to the fence position, sequences, verify gate, hand-over"
args=(cutover --yes --max-wait "$MAX_WAIT" --verify "$VERIFY")
if [ "${REVERSE:-0}" = 1 ]; then args+=(--reverse); fi
set +e
$PGFERRY "${args[@]}"
code=$?
set -e
case "$code" in
  0) ;;
  1)
    echo "verify found differences, or the target did not catch up: nothing was handed over"
    step "rollback: the source takes writes again (pgferry lifted the fence)"
    resume_app
    echo "cutover abandoned; replication keeps running, try again later"
    exit 1
    ;;
  2 | 3)
    echo "pgferry cutover refused or could not connect: nothing was changed"
    resume_app
    echo "cutover abandoned"
    exit "$code"
    ;;
  *)
    echo "pgferry cutover stopped part-way (exit $code): its message says whether to run it again or to run pgferry cutover --abort"
    exit "$code"
    ;;
esac

step "6. switch the application to the target"
if [ -n "${SWITCH_APP:-}" ]; then bash -c "$SWITCH_APP"; fi

step "7. cleanup: drop the publication and pgferry's state"
$PGFERRY cleanup --yes
echo
echo "cutover done: the target is primary; the source stays fenced (pgferry's write triggers, CONNECT revoked for application roles)"
