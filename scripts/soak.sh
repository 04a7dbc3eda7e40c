#!/usr/bin/env bash
# The soak run of docs/PERFORMANCE.md: the real server for SECONDS (default 3600) at 1,000 AMI frames/s
# with an AMI drop every 5 minutes and 500 agents logging in and out (benches/soak.rs).
#   scripts/soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export ASTCTI_SOAK_SECONDS="${1:-3600}"
exec scripts/test.sh --bench --bench soak
