#!/usr/bin/env bash
# The project's test command (README, CI): a private MariaDB, a throw-away database, then cargo test.
#   scripts/test.sh [cargo test arguments...]   (without arguments it also runs demo/run.sh --check
#                                                scripts/release.sh --check and scripts/fuzz.sh)
#   scripts/test.sh --bench [cargo bench arguments...]   the benchmarks (docs/PERFORMANCE.md) instead
#                                  of the tests
#   scripts/test.sh --stop-db      stops the private MariaDB
# Every test binary and every step runs even when an earlier one failed; the last lines name what
# failed and count the tests ("summary: N passed, N failed"), each step above counting as one.
# Environment: ASTCTI_TEST_DB_DIR (default target/test-mariadb), ASTCTI_TEST_DB_PORT (default 23306, below the ephemeral port range, or
# the next free port).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/mariadb.sh

dir="${ASTCTI_TEST_DB_DIR:-$PWD/target/test-mariadb}"
port="${ASTCTI_TEST_DB_PORT:-23306}"

if [ "${1:-}" = "--stop-db" ]; then
  mariadb_stop "$dir"
  exit 0
fi

mariadb_ensure_installed
# The client's notification test talks to a real freedesktop daemon (dunst on a private Xvfb); the
# window's test drives it with xdotool and reads its screenshots (ImageMagick) with tesseract, also
# under a real window manager (openbox) with a real panel's tray (xfce4-panel), and reads its state as
# a screen reader does (at-spi2-core).
if ! command -v Xvfb >/dev/null 2>&1 || ! command -v dunst >/dev/null 2>&1 \
   || ! command -v dbus-monitor >/dev/null 2>&1 || ! command -v dbus-run-session >/dev/null 2>&1 \
   || ! command -v dbus-send >/dev/null 2>&1 \
   || ! command -v xdotool >/dev/null 2>&1 || ! command -v import >/dev/null 2>&1 \
   || ! command -v tesseract >/dev/null 2>&1 || ! command -v openbox >/dev/null 2>&1 \
   || ! command -v xprop >/dev/null 2>&1 || [ ! -x /usr/libexec/at-spi-bus-launcher ] \
   || ! command -v xfce4-panel >/dev/null 2>&1 \
   || [ ! -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] \
   || ! ldconfig -p | grep -q 'libxkbcommon-x11.so.0' || ! ldconfig -p | grep -q 'libGL.so.1'; then
  echo "== installing xvfb, dunst, dbus, xdotool, imagemagick, tesseract-ocr, openbox, x11-utils, at-spi2-core, xfce4-panel and a CJK font from Debian packages"
  apt_install xvfb dunst dbus xdotool imagemagick tesseract-ocr openbox x11-utils at-spi2-core xfce4-panel fonts-droid-fallback \
    libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6
fi
mariadb_start "$dir" "$port"
port="$MARIADB_PORT"

echo "== creating database astcti_test and its accounts"
mariadb_root "$dir" <<SQL
DROP DATABASE IF EXISTS astcti_test;
CREATE DATABASE astcti_test;
CREATE OR REPLACE USER 'astcti_server'@'127.0.0.1' IDENTIFIED BY 'server-pw';
GRANT SELECT ON astcti_test.* TO 'astcti_server'@'127.0.0.1';
CREATE OR REPLACE USER 'astcti_admin'@'127.0.0.1' IDENTIFIED BY 'admin-pw';
GRANT ALL PRIVILEGES ON *.* TO 'astcti_admin'@'127.0.0.1';
SQL
mariadb_root "$dir" astcti_test < sql/cti.sql
# The example agent of docs/INSTALL.md (a test logs in with it).
mariadb_root "$dir" astcti_test -e "INSERT INTO cti VALUES ('alice', MD5('her password'), NULL, 'PJSIP/201');"

export ASTCTI_TEST_MYSQL_HOST=127.0.0.1
export ASTCTI_TEST_MYSQL_PORT="$port"
export ASTCTI_TEST_MYSQL_DB=astcti_test
export ASTCTI_TEST_MYSQL_USER=astcti_server
export ASTCTI_TEST_MYSQL_PASS=server-pw
export ASTCTI_TEST_MYSQL_ADMIN_USER=astcti_admin
export ASTCTI_TEST_MYSQL_ADMIN_PASS=admin-pw

if [ "${1:-}" = "--bench" ]; then
  echo "== cargo bench"
  shift
  exec cargo bench --locked "$@"
fi

# Every crate the lock file names, for every platform, before anything is built: the builds and the
# dependency check of tests/docs.rs (`cargo tree --target all`) then need nothing more from the network.
echo "== cargo fetch"
cargo fetch --locked

# Every test binary runs even when one fails, and every step after it too; the last lines say what
# failed, and how many tests passed and failed in all (a step below counts as one test).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
failed_steps=()
passed_steps=0
skipped_steps=0
times=()
took() { local s=$(( SECONDS - $2 )); times+=("$1 $((s / 60)) min $((s % 60)) s"); }
step() {
  local name="$1" t0=$SECONDS; shift
  if "$@"; then
    passed_steps=$((passed_steps + 1))
  else
    failed_steps+=("$name")
  fi
  took "$name" "$t0"
}

# demo/run.sh --asterisk as an admin runs it: an Asterisk (here ami-replay, playing a call of other
# caller and digits than the demo's own: "Customer E5", 31008) whose manager user and secret are not
# the defaults and hold characters XML and sed treat specially.
demo_against_an_asterisk() {
  local port=25038 secret='s3cr&t|"<x>'"'"'\' pid rc=0
  while port_in_use "$port"; do port=$((port + 1)); done
  target/release/ami-replay --listen "127.0.0.1:$port" --user astcti-check --secret "$secret" \
    --pace 200 --times 0 --rewrite-ids --quiet \
    tests/fixtures/ami/asterisk-22.10.1-phones/e-attended-transfer-dtmf-star2-1.ami \
    2>target/demo-asterisk-replay.log &
  pid=$!
  ASTCTI_DEMO_AMI_SECRET="$secret" demo/run.sh --check --asterisk "127.0.0.1:$port" \
    --ami-user astcti-check | tee target/demo-asterisk.log || rc=1
  kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  [ "$rc" = 0 ] && grep -q "^OPEN .*calldata=31008" target/demo-asterisk.log
}

echo "== cargo test"
cargo_test() {
  set -o pipefail
  cargo test --locked --no-fail-fast --features gui,failpoints "$@" 2>&1 | tee "$log"
}
cargo_ok=yes
t0=$SECONDS
cargo_test "$@" || cargo_ok=no
took "cargo test (build and run)" "$t0"

# The README's first command, end to end: MariaDB, server, a replayed call, the screen pop; then the
# release artefacts: glibc 2.17 binary, tarball, .deb installed and checked, Windows binary under Wine.
# (Skipped when arguments select particular tests.)
if [ "$#" -eq 0 ]; then
  echo "== demo/run.sh --check"
  step "demo/run.sh --check" demo/run.sh --check
  echo "== demo/run.sh --check --asterisk (a stand-in Asterisk with its own manager user and secret)"
  step "demo/run.sh --check --asterisk" demo_against_an_asterisk
  echo "== scripts/release.sh --check"
  step "scripts/release.sh --check" scripts/release.sh --check
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "== scripts/fuzz.sh (every target, a few seconds each)"
    step "scripts/fuzz.sh" scripts/fuzz.sh
  else
    echo "== scripts/fuzz.sh skipped: no nightly Rust toolchain here (cargo-fuzz needs one)"
    skipped_steps=1
  fi
fi

# The summary: cargo's "test result" lines added up, the failed tests by name.
sum() { { grep '^test result:' "$log" || true; } | { grep -o "[0-9]* $1" || true; } | awk '{ n += $1 } END { print n + 0 }'; }
passed=$(sum passed)
failed=$(sum failed)
failed_tests=$({ grep -E '^test .* \.\.\. FAILED$' "$log" || true; } | sed -e 's/^test //' -e 's/ \.\.\. FAILED$//' | sort -u)
if [ "$cargo_ok" = no ] && [ "$failed" -eq 0 ]; then
  # It failed before or without a failing test (a build error, a test binary that crashed).
  failed_tests="cargo test itself (see above: a build error or a crashed test binary)"
  failed=1
fi
echo
echo "times: $(IFS=,; echo "${times[*]}" | sed 's/,/; /g'); in all $((SECONDS / 60)) min $((SECONDS % 60)) s"
if [ -n "$failed_tests" ] || [ "${#failed_steps[@]}" -gt 0 ]; then
  echo "FAILED:"
  [ -n "$failed_tests" ] && echo "$failed_tests" | sed 's/^/  /'
  for s in "${failed_steps[@]}"; do echo "  $s"; done
  status=1
else
  echo "all passed"
  status=0
fi
skipped=""
[ "$skipped_steps" -eq 0 ] || skipped=", $skipped_steps skipped"
echo "summary: $((passed + passed_steps)) passed, $((failed + ${#failed_steps[@]})) failed$skipped"
exit "$status"
