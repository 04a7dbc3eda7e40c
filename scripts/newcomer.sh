#!/usr/bin/env bash
# A newcomer's run of the README's test command, on this machine: a clean clone of the committed
# HEAD, an empty cargo home (no crates downloaded, no `cargo install`ed tools such as cargo-zigbuild,
# cargo-deb or cargo-fuzz), an empty target folder (so a new private MariaDB too), then
# scripts/test.sh; optionally with the other core kept busy, as on a shared CI machine.
#
#   scripts/newcomer.sh [--busy] [--keep] [-- test.sh arguments...]
#     --busy   keep one core busy (a spinning shell) for the whole run
#     --keep   keep the work folder (clone, cargo home) afterwards; removed otherwise
#
# Prints the wall time of the whole run, and exits with scripts/test.sh's status. Run it before
# resolving an issue that changes dependencies, tests or scripts (README.md, "Tests").
#
# What it cannot undo: Debian packages (MariaDB, Xvfb, Wine, ...) and PyPI's ziglang already
# installed on this machine stay installed; rustup's toolchains are shared (a newcomer has Rust).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
busy=no
keep=no
while [ "$#" -gt 0 ]; do
  case "$1" in
    --busy) busy=yes ;;
    --keep) keep=yes ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "newcomer.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

work="$(mktemp -d "${TMPDIR:-/tmp}/astcti-newcomer-XXXXXX")"
spinner=""
cleanup() {
  [ -n "$spinner" ] && kill "$spinner" 2>/dev/null
  # The clone's private MariaDB (started by scripts/test.sh in its target folder).
  if [ -d "$work/repo" ]; then
    (cd "$work/repo" && scripts/test.sh --stop-db >/dev/null 2>&1) || true
  fi
  if [ "$keep" = no ]; then
    rm -rf "$work"
  else
    echo "newcomer: kept $work"
  fi
}
trap cleanup EXIT

echo "== newcomer: cloning $(git -C "$root" rev-parse --short HEAD) into $work/repo"
git clone -q --no-local "$root" "$work/repo"

# Only rustup's proxies on PATH (cargo, rustc, rustfmt, clippy): tools that an earlier
# `cargo install` put beside them are hidden, and new ones go into the empty cargo home.
mkdir -p "$work/cargo-home/bin" "$work/proxies"
rustup_bin="$(dirname "$(command -v rustup)")"
for tool in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver rustup; do
  [ -x "$rustup_bin/$tool" ] && ln -s "$rustup_bin/$tool" "$work/proxies/$tool"
done
path="$work/cargo-home/bin:$work/proxies"
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ "$d" = "$rustup_bin" ] || [ "$d" = "$HOME/.cargo/bin" ] || path="$path:$d"
done

if [ "$busy" = yes ]; then
  echo "== newcomer: keeping one core busy"
  (while :; do :; done) &
  spinner=$!
fi

start=$(date +%s)
status=0
(
  cd "$work/repo"
  env -u CARGO_TARGET_DIR -u RUSTFLAGS CARGO_HOME="$work/cargo-home" PATH="$path" \
    scripts/test.sh "$@"
) || status=$?
took=$(( $(date +%s) - start ))
echo "== newcomer: scripts/test.sh exited $status after $((took / 60)) min $((took % 60)) s (busy core: $busy)"
exit "$status"
