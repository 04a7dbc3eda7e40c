#!/usr/bin/env bash
# The benchmarks of docs/PERFORMANCE.md, every figure printed beside its goal:
#   scripts/bench.sh            pipeline (in process), server (end to end, MariaDB) and, where valgrind
#                               is installed, the instruction count of --replay
#   scripts/bench.sh pipeline   only the in-process figures (no database)
# The test MariaDB is started as scripts/test.sh does. ASTCTI_BENCH_AGENTS=1,100 limits the agent counts
# of the end-to-end bench. Output: the tables, then a summary of the goals; also in target/bench.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench.txt
mkdir -p target
: > "$out"
what="${1:-all}"

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo "== commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')" | tee -a "$out"

if [ "$what" = pipeline ]; then
  cargo bench --locked --bench pipeline 2>&1 | tee -a "$out"
else
  # The end-to-end bench holds 10,000 client sockets in this process.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  scripts/test.sh --bench --bench pipeline --bench server 2>&1 | tee -a "$out"
fi

if [ "$what" != pipeline ]; then
  if command -v valgrind >/dev/null 2>&1; then
    echo "== instruction count of --replay (valgrind --tool=callgrind)" | tee -a "$out"
    cargo build --locked --release --bin astcti-server 2>&1 | tail -1
    capture=tests/fixtures/ami/asterisk-20.20.1/f-burst-50.ami
    valgrind --tool=callgrind --callgrind-out-file=target/callgrind.out \
      target/release/astcti-server --replay "$capture" >/dev/null 2>target/callgrind.log
    total=$(grep -m1 -o 'Collected : [0-9]*' target/callgrind.log | grep -o '[0-9]*' || true)
    events=$(grep -c '^Event:' "$capture" || true)
    if [ -n "$total" ]; then
      echo "| --replay f-burst-50.ami, instructions (callgrind) | $total ($((total / events)) per event) | a regression shows as a larger total (docs/PERFORMANCE.md) |" | tee -a "$out"
    else
      echo "callgrind gave no total: see target/callgrind.log" | tee -a "$out"
    fi
  else
    echo "== valgrind is not installed: the instruction count is skipped (apt-get install valgrind)" | tee -a "$out"
  fi
fi

echo
echo "== goals"
grep -E '\| (≥|≤|CPU ≤)[^|]*: (met|NOT met)' "$out" | sed -E 's/^\| ([^|]*)\|.*\| ([^|]*) \|$/\1: \2/' || true
