# Sourced by scripts/test.sh, scripts/mariadb.sh and scripts/release.sh: Debian packages, installed
# the same way everywhere.
#   apt_install PKG...   installs the packages (as root, or with sudo), waiting up to
#                        ASTCTI_APT_LOCK_WAIT seconds (default 600) for another apt or dpkg (an
#                        unattended upgrade, a second test run) to let go of its locks, instead of
#                        failing at once; the package lists are updated once per process.

_apt_updated=no

_apt() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local wait="${ASTCTI_APT_LOCK_WAIT:-600}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout="$wait" "$@"
}

apt_install() {
  if [ "$_apt_updated" = no ]; then
    # The lists' lock is not covered by DPkg::Lock::Timeout on every apt: try a few times.
    local i
    for i in 1 2 3 4 5 6; do
      _apt update -qq >/dev/null 2>&1 && break
      [ "$i" -lt 6 ] || { echo "apt-get update failed (is another apt holding its lists?); going on with the lists there are" >&2; break; }
      sleep 10
    done
    _apt_updated=yes
  fi
  _apt install -y -qq "$@" >/dev/null
}
