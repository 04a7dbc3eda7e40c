#!/usr/bin/env bash
# The README's first command: build astcti-server, start a private MariaDB with the demo agent, and run
# the server from a demo directory until Ctrl-C. Stops only what it started.
#   demo/run.sh
# Environment: ASTCTI_DEMO_DB_PORT (default 33307), ASTCTI_DEMO_CTI_PORT (default 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
. scripts/mariadb.sh

db_dir="$root/target/demo-mariadb"
db_port="${ASTCTI_DEMO_DB_PORT:-33307}"
cti_port="${ASTCTI_DEMO_CTI_PORT:-9000}"
demo_dir="$root/target/demo"

echo "== building astcti-server (release)"
cargo build --release --locked --quiet

mariadb_ensure_installed
started_db=no
if ! mariadb_running "$db_dir"; then
  mariadb_start "$db_dir" "$db_port"
  started_db=yes
fi
echo "== loading sql/cti.sql into database 'cti' (agent 'test', password 'test', EXT SIP/201)"
mariadb_root "$db_dir" <<SQL
CREATE DATABASE IF NOT EXISTS cti;
CREATE OR REPLACE USER 'cti'@'127.0.0.1' IDENTIFIED BY 'cti';
GRANT SELECT ON cti.* TO 'cti'@'127.0.0.1';
SQL
mariadb_root "$db_dir" cti < sql/cti.sql

mkdir -p "$demo_dir"
cp target/release/astcti-server "$demo_dir/"
sed -e "s|<add key=\"MYSQL_TIMEOUT\"|<add key=\"MYSQL_PORT\" value=\"$db_port\" />\n\t\t\t<add key=\"MYSQL_TIMEOUT\"|" \
    -e "s|<add key=\"CTI_SERVER_LISTEN_PORT\" value=\"9000\" />|<add key=\"CTI_SERVER_LISTEN_PORT\" value=\"$cti_port\" />|" \
    AstCTIServer.xml > "$demo_dir/AstCTIServer.xml"

cleanup() {
  if [ "$started_db" = yes ]; then
    echo "== stopping the demo MariaDB"
    mariadb_stop "$db_dir" || true
  fi
}
trap cleanup EXIT

cat <<MSG

== astcti-server is starting in $demo_dir (Ctrl-C stops it)
   Agents' clients connect to 127.0.0.1:$cti_port and log in as user 'test', password 'test'
   (the original AstCTIClient, or: printf 'USER test\nPASS 098f6bcd4621d373cade4e832627b4f6\n' | nc 127.0.0.1 $cti_port).
   Logs: $demo_dir/logs/ and this terminal.
   Not there yet: the Asterisk link and screen pops (coming with the AMI and calls issues), so the
   server answers logins but has no calls to report.

MSG
cd "$demo_dir"
./astcti-server || true
