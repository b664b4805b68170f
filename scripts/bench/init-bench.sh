#!/usr/bin/env bash
# Build, then run the init benchmark (see init-bench.mjs and README.md in this folder).
#   scripts/bench/init-bench.sh --scale 0.02          # smoke run, about a minute
#   scripts/bench/init-bench.sh                       # scale 1 (≈1.5 GB), 3 rounds
#   scripts/bench/init-bench.sh --rss-check           # pgferry's memory at 1× and with the biggest table 10×
set -euo pipefail
cd "$(dirname "$0")/../.."
# The same build as `npm run build` (tsc, then the bundled CLI): a tsc-only build would time an unbundled CLI.
npx tsc -p tsconfig.build.json >/dev/null || echo "warning: the build reported errors; using what it emitted" >&2
node scripts/bundle.mjs
exec node scripts/bench/init-bench.mjs "$@"
