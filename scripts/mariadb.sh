# Sourced by scripts/test.sh and demo/run.sh: a private MariaDB instance on 127.0.0.1.
# It never touches a system MariaDB: its own data directory, socket and port.
#   mariadb_ensure_installed          installs mariadb-server from Debian packages if missing
#   mariadb_start DIR PORT            starts (if not running) an instance with data in DIR, on PORT or,
#                                     if that port is taken, the next free one; sets MARIADB_PORT
#   mariadb_root DIR [args...]        runs the mariadb client as root over the instance's socket
#   mariadb_stop DIR                  stops the instance

. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

mariadb_ensure_installed() {
  if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then
    return 0
  fi
  echo "== installing MariaDB from Debian packages"
  apt_install mariadb-server mariadb-client
}

_mariadbd() {
  if command -v mariadbd >/dev/null 2>&1; then echo mariadbd; else echo /usr/sbin/mariadbd; fi
}

mariadb_root() {
  local dir="$1"; shift
  mariadb --no-defaults --socket="$dir/mysqld.sock" -u root "$@"
}

mariadb_running() {
  mariadb-admin --no-defaults --socket="$1/mysqld.sock" -u root ping >/dev/null 2>&1
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

mariadb_start() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if mariadb_running "$dir"; then
    MARIADB_PORT="$(cat "$dir/port" 2>/dev/null || echo "$port")"
    return 0
  fi
  local user_opt=()
  [ "$(id -u)" -eq 0 ] && user_opt=(--user=root)
  if [ ! -d "$dir/data/mysql" ]; then
    echo "== creating a MariaDB data directory in $dir/data"
    mariadb-install-db --no-defaults --datadir="$dir/data" "${user_opt[@]}" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
      || { cat "$dir/install.log"; return 1; }
  fi
  # A port nobody listens on can still be taken at bind time (by another starting server, or, in
  # the ephemeral range, by an outgoing connection's local port): then the next one is tried.
  local tries=0 pid i
  while :; do
    while port_in_use "$port"; do
      tries=$((tries + 1))
      [ "$tries" -le 50 ] || { echo "no free port for MariaDB near $2" >&2; return 1; }
      port=$((port + 1))
    done
    echo "$port" > "$dir/port"
    MARIADB_PORT="$port"
    echo "== starting MariaDB on 127.0.0.1:$port (data in $dir/data)"
    : > "$dir/error.log"
    setsid "$(_mariadbd)" --no-defaults --datadir="$dir/data" --socket="$dir/mysqld.sock" \
      --port="$port" --bind-address=127.0.0.1 --pid-file="$dir/mysqld.pid" \
      --log-error="$dir/error.log" --skip-name-resolve "${user_opt[@]}" </dev/null >/dev/null 2>&1 &
    pid=$!
    for i in $(seq 1 300); do
      if mariadb_running "$dir"; then
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if ! kill -0 "$pid" 2>/dev/null && grep -q "Address already in use" "$dir/error.log"; then
      tries=$((tries + 1))
      [ "$tries" -le 50 ] || { echo "no free port for MariaDB near $2" >&2; return 1; }
      echo "== port $port was taken as MariaDB started; trying the next one"
      port=$((port + 1))
      continue
    fi
    echo "MariaDB did not start; its log:" >&2
    tail -n 30 "$dir/error.log" >&2
    return 1
  done
}

mariadb_stop() {
  local dir="$1"
  if mariadb_running "$dir"; then
    mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -u root shutdown
  fi
}
