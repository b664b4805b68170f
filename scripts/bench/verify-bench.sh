#!/usr/bin/env bash
# Build, then run the verify benchmark (see verify-bench.mjs for what it measures).
#   scripts/bench/verify-bench.sh --scale 0.05
#   scripts/bench/verify-bench.sh --source postgresql://… --target postgresql://… [--inject]
set -euo pipefail
cd "$(dirname "$0")/../.."
# The same build as `npm run build` (tsc, then the bundled CLI): a tsc-only build would time an unbundled CLI.
npx tsc -p tsconfig.build.json >/dev/null || echo "warning: the build reported errors; using what it emitted" >&2
node scripts/bundle.mjs
exec node scripts/bench/verify-bench.mjs "$@"
