#!/usr/bin/env bash
# The README's first command: from a fresh machine to a screen pop.
#
#   demo/run.sh                        run the demo until Ctrl-C
#   demo/run.sh --check                the same path without a terminal: exits 0 once the demo client
#                                      has received the Link with calldata 40401 (with --asterisk: the
#                                      popup and screen pop of whatever call you place), non-zero
#                                      (saying what failed) otherwise
#   demo/run.sh --asterisk HOST:PORT   use a real Asterisk's AMI (configured from demo/asterisk/, see
#                                      demo/README.md) instead of the recorded call
#   demo/run.sh --ami-user NAME        that Asterisk's manager user (default ctimanager)
#   demo/run.sh --ami-secret SECRET    its secret (default ctimanager, or ASTCTI_DEMO_AMI_SECRET)
#   demo/run.sh --ext EXT              the demo agent's EXT (default PJSIP/201, the agent phone of
#                                      demo/asterisk/; SIP/201 for demo/asterisk-1.4/)
#   demo/run.sh --help                 this text
#
# It builds the release binaries; makes sure a MariaDB runs on 127.0.0.1 (a private instance in
# target/demo-mariadb, installed from Debian's packages if missing) with the cti table and the demo
# agent test/test on PJSIP/201 (the agent phone of demo/asterisk/pjsip.conf); starts astcti-server
# from target/demo with a demo AstCTIServer.xml; starts its own ami-replay playing a real recorded
# call to 100 (Asterisk 22 with PJSIP: "Customer P" <0215552001>, calldata 40401) in a loop — or, with
# --asterisk, connects to that Asterisk and waits for you to place the call; and starts the demo
# client, the agent's astcti-client, which shows the caller and opens the demo page on answer.
# It never uses whatever happens to answer on a well-known port unless told to.
# Stops everything it started, and only that.
#
# Ports (environment): ASTCTI_DEMO_DB_PORT (23307, or the next free port: below the ephemeral port
# range), ASTCTI_DEMO_CTI_PORT (9000; --check moves to the next free one), ASTCTI_DEMO_REPLAY_PORT
# (15038, or the next free one).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
. scripts/mariadb.sh

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
check=no
asterisk=""
ext_arg=""
ami_user=ctimanager
ami_secret="${ASTCTI_DEMO_AMI_SECRET:-ctimanager}"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --check) check=yes ;;
    --asterisk)
      [ "$#" -ge 2 ] || { echo "demo/run.sh: --asterisk needs HOST:PORT" >&2; exit 2; }
      asterisk="$2"; shift ;;
    --ext)
      [ "$#" -ge 2 ] || { echo "demo/run.sh: --ext needs an EXT such as SIP/201" >&2; exit 2; }
      ext_arg="$2"; shift ;;
    --ami-user)
      [ "$#" -ge 2 ] || { echo "demo/run.sh: --ami-user needs the manager user's name" >&2; exit 2; }
      ami_user="$2"; shift ;;
    --ami-secret)
      [ "$#" -ge 2 ] || { echo "demo/run.sh: --ami-secret needs the manager user's secret" >&2; exit 2; }
      ami_secret="$2"; shift ;;
    --help|-h) usage; exit 0 ;;
    *) echo "demo/run.sh: unknown argument $1 (see demo/run.sh --help)" >&2; exit 2 ;;
  esac
  shift
done

db_dir="$root/target/demo-mariadb"
db_port="${ASTCTI_DEMO_DB_PORT:-23307}"
cti_port="${ASTCTI_DEMO_CTI_PORT:-9000}"
replay_port="${ASTCTI_DEMO_REPLAY_PORT:-15038}"
demo_dir="$root/target/demo"
capture="$root/tests/fixtures/ami/asterisk-22.10.1/a-inbound-100-answered.ami"
calldata=40401
agent_ext="${ext_arg:-PJSIP/201}"
case "$agent_ext" in *[!A-Za-z0-9/_.@-]*|"") echo "demo/run.sh: --ext $agent_ext: letters, digits and / _ . @ - only" >&2; exit 2 ;; esac

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
cargo build --release --locked --quiet --bins --features client || fail "cargo build"

mariadb_ensure_installed || fail "MariaDB could not be installed"
if ! mariadb_running "$db_dir"; then
  started_db=yes
fi
mariadb_start "$db_dir" "$db_port" || fail "MariaDB did not start (see $db_dir/error.log)"
db_port="$MARIADB_PORT"
echo "== loading sql/cti.sql into database 'cti'; the demo agent: 'test', password 'test', EXT $agent_ext"
mariadb_root "$db_dir" -e "CREATE DATABASE IF NOT EXISTS cti" || fail "creating the cti database"
mariadb_root "$db_dir" cti < sql/cti.sql || fail "loading sql/cti.sql"
mariadb_root "$db_dir" cti -e "DELETE FROM cti WHERE USERNAME = 'test' OR EXT = '$agent_ext';
  INSERT INTO cti VALUES ('test', MD5('test'), NULL, '$agent_ext');" || fail "adding the demo agent"
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

if [ -n "$asterisk" ]; then
  ami_host="${asterisk%:*}"
  ami_port="${asterisk##*:}"
  [ -n "$ami_user" ] && [ -n "$ami_secret" ] || fail "--ami-user and --ami-secret must not be empty"
  case "$ami_user$ami_secret" in *[[:cntrl:]]*) fail "--ami-user and --ami-secret cannot hold control characters (line breaks, tabs)" ;; esac
  target/release/astcti-demo-client --probe-ami "$asterisk" "$ami_user" "$ami_secret" \
    || fail "no Asterisk manager with user $ami_user and the given secret answers on $asterisk (--ami-user, --ami-secret; demo/README.md)"
  echo "== using the Asterisk at $asterisk; waiting for a call: from phone 202 (or any phone in"
  echo "   [astctidemo]) call 100, key five digits, answer on $agent_ext"
else
  ami_host=127.0.0.1
  ami_port="$replay_port"
  while port_in_use "$ami_port"; do ami_port=$((ami_port + 1)); done
  pace=recorded
  [ "$check" = yes ] && pace=200
  echo "== starting ami-replay (the demo's own Asterisk stand-in) on 127.0.0.1:$ami_port"
  echo "   playing a real Asterisk 22 call in a loop: \"Customer P\" <0215552001> calls 100, keys"
  echo "   $calldata, the agent's phone $agent_ext rings and answers (a call about every 12 s)"
  target/release/ami-replay --listen "127.0.0.1:$ami_port" --pace "$pace" --times 0 --rewrite-ids \
    --quiet "$capture" 2>"$demo_dir/ami-replay.log" &
  replay_pid=$!
  for _ in $(seq 1 50); do
    grep -q "listening on" "$demo_dir/ami-replay.log" 2>/dev/null && break
    kill -0 "$replay_pid" 2>/dev/null || fail "ami-replay exited: $(cat "$demo_dir/ami-replay.log") (set ASTCTI_DEMO_REPLAY_PORT)"
    sleep 0.1
  done
fi

# The manager user and secret as XML attribute values, then as sed replacement text.
xml_attr() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g' -e "s/'/\&apos;/g"; }
sed_repl() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }
user_xml="$(sed_repl "$(xml_attr "$ami_user")")"
secret_xml="$(sed_repl "$(xml_attr "$ami_secret")")"
sed -e "s|<add key=\"MYSQL_TIMEOUT\"|<add key=\"MYSQL_PORT\" value=\"$db_port\" />\n\t\t\t<add key=\"MYSQL_TIMEOUT\"|" \
    -e "s|<add key=\"MANAGER_HOST\" value=\"127.0.0.1\"/>|<add key=\"MANAGER_HOST\" value=\"$ami_host\" />|" \
    -e "s|<add key=\"MANAGER_PORT\" value=\"5038\" />|<add key=\"MANAGER_PORT\" value=\"$ami_port\" />|" \
    -e "s|<add key=\"MANAGER_USER\" value=\"ctimanager\" />|<add key=\"MANAGER_USER\" value=\"$user_xml\" />|" \
    -e "s|<add key=\"MANAGER_PASS\" value=\"ctimanager\" />|<add key=\"MANAGER_PASS\" value=\"$secret_xml\" />|" \
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

# The agent's program, astcti-client, with settings in the original AstCTIClient.config format: the
# popup with the caller's number and name, then, on answer, the demo web page as the CRM page.
url="file://$demo_dir/web/index.html?callerid={CALLERID:url}&amp;callername={CALLERNAME:url}&amp;calldata={CALLDATA:url}&amp;channel={CHANNEL:url}&amp;uniqueid={UNIQUEID:url}"
cat > "$demo_dir/AstCTIClient.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<LocalAppSettings className="AstCTIClient.LocalAppSettings">
  <CTIContextes className="AstCTIClient.CTIContextCollection">
    <CTIContext className="AstCTIClient.CTIContext">
      <Context>astctidemo</Context>
      <Application></Application>
      <Parameters>$url</Parameters>
      <InternalBrowser>True</InternalBrowser>
      <CatchAll>False</CatchAll>
      <Enabled>True</Enabled>
    </CTIContext>
  </CTIContextes>
  <CTIOutboundContextes className="AstCTIClient.CTIOutboundContextCollection">
    <CTIOutboundContext className="AstCTIClient.CTIOutboundContext">
      <Context>astctidemo</Context>
      <Priority>1</Priority>
    </CTIOutboundContext>
  </CTIOutboundContextes>
  <TriggerCallerId>True</TriggerCallerId>
  <CallerIdTimeout>3</CallerIdTimeout>
  <Host>127.0.0.1</Host>
  <Port>$cti_port</Port>
  <SocketTimeout>1500</SocketTimeout>
  <Username>test</Username>
  <Password>test</Password>
  <PhoneExt>$agent_ext</PhoneExt>
</LocalAppSettings>
XML
echo "== the demo agent runs astcti-client (user test, password test, EXT $agent_ext; settings in"
echo "   $demo_dir/AstCTIClient.config): RINGING = the caller-ID popup with number and name,"
echo "   OPEN = the screen pop, the CRM page it opens on answer"
echo
if [ "$check" = yes ]; then
  client_log="$demo_dir/client.log"
  XDG_RUNTIME_DIR="$demo_dir" target/release/astcti-client --settings "$demo_dir/AstCTIClient.config" \
    >"$client_log" 2>&1 </dev/null &
  client_pid=$!
  # The recorded call brings "Customer P" and 40401; a real Asterisk whatever call is placed (any
  # caller, any digits), for as long as it takes someone to place it (10 minutes).
  if [ -n "$asterisk" ]; then
    want_ringing='^RINGING '
    want_open='^OPEN .*calldata='
    tries=6000
  else
    want_ringing='^RINGING  0215552001 (Customer P)'
    want_open="^OPEN .*calldata=$calldata"
    tries=600
  fi
  for _ in $(seq 1 "$tries"); do
    grep -q "$want_open" "$client_log" 2>/dev/null && break
    kill -0 "$client_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -TERM "$client_pid" 2>/dev/null; wait "$client_pid" 2>/dev/null || true
  cat "$client_log"
  grep -q "$want_ringing" "$client_log" \
    || fail "astcti-client did not show the caller's number and name"
  grep -q "$want_open" "$client_log" \
    || fail "astcti-client did not open the screen pop with calldata"
  echo
  echo "demo: OK: the agent's client showed the caller and opened the screen pop: $(grep -m1 "$want_open" "$client_log")"
else
  XDG_RUNTIME_DIR="$demo_dir" target/release/astcti-client --settings "$demo_dir/AstCTIClient.config" || true
fi
