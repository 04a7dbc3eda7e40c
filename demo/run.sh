#!/usr/bin/env bash
# The README's first command: from a fresh machine to a screen pop.
#
#   demo/run.sh           run the demo until Ctrl-C
#   demo/run.sh --check   the same path without a terminal: exits 0 once the demo client has received
#                         the Link with calldata 12345, non-zero (saying what failed) otherwise
#
# It builds the release binaries; makes sure a MariaDB runs on 127.0.0.1 (a private instance in
# target/demo-mariadb, installed from Debian's packages if missing) with the cti table and the demo
# agent test/test on SIP/201; starts astcti-server from target/demo with a demo AstCTIServer.xml; uses a
# real Asterisk if its AMI answers on 127.0.0.1:5038 with ctimanager/ctimanager, otherwise starts
# ami-replay playing a real recorded call to 100 (calldata 12345, Asterisk 20) in a loop; and connects
# a demo client, as the agent, which prints every notification and the URL it would open.
# Stops everything it started, and only that.
#
# Environment: ASTCTI_DEMO_DB_PORT (23307, or the next free port; below the ephemeral port range, which the tests' many client connections leave in TIME_WAIT), ASTCTI_DEMO_CTI_PORT (9000),
# ASTCTI_DEMO_REPLAY_PORT (15038).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
. scripts/mariadb.sh

check=no
case "${1:-}" in
  --check) check=yes ;;
  "") ;;
  *) echo "usage: demo/run.sh [--check]" >&2; exit 2 ;;
esac

db_dir="$root/target/demo-mariadb"
db_port="${ASTCTI_DEMO_DB_PORT:-23307}"
cti_port="${ASTCTI_DEMO_CTI_PORT:-9000}"
replay_port="${ASTCTI_DEMO_REPLAY_PORT:-15038}"
demo_dir="$root/target/demo"
capture="$root/tests/fixtures/ami/asterisk-20.20.1/a-inbound-100-answered.ami"

started_db=no
server_pid=""
replay_pid=""
cleanup() {
  set +e
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "$replay_pid" ] && kill -TERM "$replay_pid" 2>/dev/null && wait "$replay_pid" 2>/dev/null
  if [ "$started_db" = yes ]; then
    echo "== stopping the demo MariaDB"
    mariadb_stop "$db_dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "demo: FAILED: $*" >&2; exit 1; }

# The agents' port: 9000, the original client's default. --check (no human client) moves to the next
# free port if 9000 is taken; an interactive demo says so instead.
if [ -z "${ASTCTI_DEMO_CTI_PORT:-}" ] && port_in_use "$cti_port"; then
  if [ "$check" = yes ]; then
    while port_in_use "$cti_port"; do cti_port=$((cti_port + 1)); done
  else
    fail "port $cti_port is taken (the old C# server?); stop it or set ASTCTI_DEMO_CTI_PORT"
  fi
fi

echo "== building astcti-server, ami-replay and the demo client (release)"
cargo build --release --locked --quiet --bins || fail "cargo build"

mariadb_ensure_installed || fail "MariaDB could not be installed"
if ! mariadb_running "$db_dir"; then
  started_db=yes
fi
mariadb_start "$db_dir" "$db_port" || fail "MariaDB did not start (see $db_dir/error.log)"
db_port="$MARIADB_PORT"
echo "== loading sql/cti.sql into database 'cti' (agent 'test', password 'test', EXT SIP/201)"
mariadb_root "$db_dir" -e "CREATE DATABASE IF NOT EXISTS cti" || fail "creating the cti database"
mariadb_root "$db_dir" cti < sql/cti.sql || fail "loading sql/cti.sql"
# The two accounts of docs/INSTALL.md: the server's reads; the clients' may write their own EXT.
mariadb_root "$db_dir" <<SQL || fail "creating the database accounts"
CREATE OR REPLACE USER 'cti'@'127.0.0.1' IDENTIFIED BY 'cti';
GRANT SELECT ON cti.cti TO 'cti'@'127.0.0.1';
CREATE OR REPLACE USER 'cticlient'@'%' IDENTIFIED BY 'cticlient';
GRANT SELECT, UPDATE (EXT) ON cti.cti TO 'cticlient'@'%';
SQL

rm -rf "$demo_dir"
mkdir -p "$demo_dir/web"
cp target/release/astcti-server "$demo_dir/"
cp demo/web/index.html "$demo_dir/web/"

if target/release/astcti-demo-client --probe-ami 127.0.0.1:5038 ctimanager ctimanager; then
  ami_port=5038
  echo "== an Asterisk answers on 127.0.0.1:5038 with the demo manager user: using it"
  echo "   (call 100 from phone 200 or 202 and key five digits; the agent is SIP/201)"
else
  ami_port="$replay_port"
  pace=recorded
  [ "$check" = yes ] && pace=200
  echo "== no Asterisk with the demo manager user on 127.0.0.1:5038: starting ami-replay on 127.0.0.1:$ami_port"
  echo "   playing a real Asterisk 20 call in a loop: \"Customer A\" <0215550100> calls 100, keys 12345,"
  echo "   the agent's phone SIP/201 rings and answers (a call about every 12 s)"
  target/release/ami-replay --listen "127.0.0.1:$ami_port" --pace "$pace" --times 0 --rewrite-ids \
    --quiet "$capture" 2>"$demo_dir/ami-replay.log" &
  replay_pid=$!
  for _ in $(seq 1 50); do
    grep -q "listening on" "$demo_dir/ami-replay.log" 2>/dev/null && break
    kill -0 "$replay_pid" 2>/dev/null || fail "ami-replay exited: $(cat "$demo_dir/ami-replay.log") (set ASTCTI_DEMO_REPLAY_PORT)"
    sleep 0.1
  done
fi

sed -e "s|<add key=\"MYSQL_TIMEOUT\"|<add key=\"MYSQL_PORT\" value=\"$db_port\" />\n\t\t\t<add key=\"MYSQL_TIMEOUT\"|" \
    -e "s|<add key=\"MANAGER_PORT\" value=\"5038\" />|<add key=\"MANAGER_PORT\" value=\"$ami_port\" />|" \
    -e "s|<add key=\"CTI_SERVER_LISTEN_PORT\" value=\"9000\" />|<add key=\"CTI_SERVER_LISTEN_PORT\" value=\"$cti_port\" />|" \
    AstCTIServer.xml > "$demo_dir/AstCTIServer.xml"

echo "== starting astcti-server in $demo_dir (log: $demo_dir/server.log and $demo_dir/logs/)"
(cd "$demo_dir" && exec ./astcti-server) 2>"$demo_dir/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "CTI server listening on" "$demo_dir/server.log" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || fail "astcti-server exited: $(tail -n 3 "$demo_dir/server.log")"
  sleep 0.1
done
grep -q "CTI server listening on" "$demo_dir/server.log" || fail "astcti-server did not start listening"

url="file://$demo_dir/web/index.html?callerid={CALLERID}&callername={CALLERNAME}&calldata={CALLDATA}&channel={CHANNEL}&uniqueid={UNIQUEID}"
echo "== the demo agent logs in (user test, password test, EXT SIP/201) and waits for calls"
echo "   RINGING = the caller-ID popup, ANSWERED = the screen pop: the URL the client opens"
echo
if [ "$check" = yes ]; then
  target/release/astcti-demo-client --server "127.0.0.1:$cti_port" --url "$url" \
    --until-link 12345 --timeout 60 || fail "the demo client did not receive the Link with calldata 12345"
  echo
  echo "demo: OK: the agent received the screen pop with calldata 12345"
else
  target/release/astcti-demo-client --server "127.0.0.1:$cti_port" --url "$url" || true
fi
