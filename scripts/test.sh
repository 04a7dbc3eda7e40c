#!/usr/bin/env bash
# The project's test command (README, CI): a private MariaDB, a throw-away database, then cargo test.
#   scripts/test.sh [cargo test arguments...]   (without arguments it also runs demo/run.sh --check
#                                                scripts/release.sh --check and scripts/fuzz.sh)
#   scripts/test.sh --bench [cargo bench arguments...]   the benchmarks (docs/PERFORMANCE.md) instead
#                                  of the tests
#   scripts/test.sh --stop-db      stops the private MariaDB
# Environment: ASTCTI_TEST_DB_DIR (default target/test-mariadb), ASTCTI_TEST_DB_PORT (default 33306, or
# the next free port).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/mariadb.sh

dir="${ASTCTI_TEST_DB_DIR:-$PWD/target/test-mariadb}"
port="${ASTCTI_TEST_DB_PORT:-33306}"

if [ "${1:-}" = "--stop-db" ]; then
  mariadb_stop "$dir"
  exit 0
fi

mariadb_ensure_installed
# The client's notification test talks to a real freedesktop daemon (dunst on a private Xvfb); the
# window's test drives it with xdotool and reads its screenshots (ImageMagick) with tesseract.
if ! command -v Xvfb >/dev/null 2>&1 || ! command -v dunst >/dev/null 2>&1 \
   || ! command -v dbus-monitor >/dev/null 2>&1 || ! command -v dbus-run-session >/dev/null 2>&1 \
   || ! command -v xdotool >/dev/null 2>&1 || ! command -v import >/dev/null 2>&1 \
   || ! command -v tesseract >/dev/null 2>&1 \
   || ! ldconfig -p | grep -q 'libxkbcommon-x11.so.0' || ! ldconfig -p | grep -q 'libGL.so.1'; then
  echo "== installing xvfb, dunst, dbus, xdotool, imagemagick and tesseract-ocr from Debian packages"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq xvfb dunst dbus xdotool imagemagick tesseract-ocr \
    libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 >/dev/null
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

echo "== cargo test"
cargo test --locked --features gui "$@"

# The README's first command, end to end: MariaDB, server, a replayed call, the screen pop; then the
# release artefacts: glibc 2.17 binary, tarball, .deb installed and checked, Windows binary under Wine.
# (Skipped when arguments select particular tests.)
if [ "$#" -eq 0 ]; then
  echo "== demo/run.sh --check"
  demo/run.sh --check
  echo "== scripts/release.sh --check"
  scripts/release.sh --check
  echo "== scripts/fuzz.sh (every target, a few seconds each)"
  scripts/fuzz.sh
fi
