#!/usr/bin/env bash
# Fuzzing (docs/SECURITY.md): the targets of tests/fuzz/ with cargo-fuzz (libFuzzer), seeded from the
# real captures, the shipped configuration and client command lines.
#   scripts/fuzz.sh                 every target for 5 s (what scripts/test.sh runs)
#   scripts/fuzz.sh TARGET [SECONDS] one target (ami_frame, ami_calls, cti_session, config,
#                                    client_input), default 60 s
# Needs a nightly Rust toolchain (`rustup toolchain list`; cargo-fuzz builds with -Zsanitizer) and
# cargo-fuzz (installed from crates.io when missing). Without nightly it says so and exits 0: the
# property tests of tests/properties.rs still run in the normal suite.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(ami_frame ami_calls cti_session config client_input)
if [ "$#" -ge 1 ]; then
  targets=("$1")
  seconds="${2:-60}"
else
  seconds=5
fi
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: skipped: no nightly Rust toolchain here (cargo-fuzz needs one: rustup toolchain install nightly)"
  exit 0
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== fuzz: installing cargo-fuzz"
  cargo install --locked -q cargo-fuzz || { echo "fuzz: FAILED: cargo install cargo-fuzz" >&2; exit 1; }
fi
corpus=target/fuzz-corpus
mkdir -p "$corpus"
seed() {
  local t="$1" dir="$corpus/$1"
  mkdir -p "$dir"
  [ -n "$(ls -A "$dir")" ] && return 0
  case "$t" in
    ami_frame|ami_calls)
      for f in tests/fixtures/ami/*/*.ami; do
        [ "$(stat -c %s "$f")" -lt 200000 ] && cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"
      done ;;
    cti_session)
      printf 'USER test\nPASS 098f6bcd4621d373cade4e832627b4f6\nNOOP\nORIG 202|astctidemo|1\nQUIT\n' > "$dir/login"
      printf 'USER a\r\nPA' > "$dir/split" ;;
    config)
      cp AstCTIServer.xml "$dir/shipped.xml" ;;
    client_input)
      printf '100 CTISERVER WELCOME\n<event id="Link">\n<call>\t<calleridnum>0215552001</calleridnum>\n</call></event>\n' > "$dir/notification"
      printf 'tel:%%2B39%%1\xc3\xa9\x00x" --evil "y\x00ctx\x001&admin=1#{CALLERNAME}' > "$dir/hostile" ;;
  esac
}
passed=0
for t in "${targets[@]}"; do
  seed "$t"
  echo "== fuzz: $t for $seconds s"
  cargo +nightly fuzz run --fuzz-dir tests/fuzz "$t" "$corpus/$t" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=0 2>&1 | tail -n 3
  passed=$((passed + 1))
done
echo "fuzz: $passed targets ran without a finding"
