#!/usr/bin/env bash
# Release artefacts in target/dist/ (docs/INSTALL.md):
#   astcti-server-VERSION-x86_64-linux-glibc2.17.tar.gz  the binary (runs on glibc 2.17 and later:
#       Debian 8+, Ubuntu 14.04+, RHEL/Alma/CentOS 7+, the FreePBX distribution), the example
#       configuration, sql/, the systemd unit, the Task Scheduler task, the docs;
#   astcti-server_VERSION-1_amd64.deb                     the Debian package (binary, unit, system user,
#       /etc/astcti-server/AstCTIServer.xml as a conffile, /var/log/astcti-server);
#   astcti-server-VERSION-x86_64-linux-glibc2.17-windows/ astcti-server.exe with the example
#       configuration and the Task Scheduler task, when rustup has (or can add) the
#       x86_64-pc-windows-gnu target and Debian's MinGW linker is installed (or can be).
#
# What it needs, and installs when missing: zig (PyPI package ziglang), cargo-zigbuild and cargo-deb
# (crates.io), objdump (binutils), gcc-mingw-w64-x86-64 (Debian) for the Windows build.
#   scripts/release.sh            build everything it can
#   scripts/release.sh --check    also check: glibc symbols <= 2.17 (objdump -T), the tarball's files,
#                                 the .deb installed with dpkg (as root) and its --check-config from
#                                 the installed paths, the Windows binary's --check-config and --replay
#                                 under Wine (Debian's wine) when it was built
set -euo pipefail
cd "$(dirname "$0")/.."
check=no
[ "${1:-}" = "--check" ] && check=yes

say() { echo "== release: $*"; }
die() { echo "release: FAILED: $*" >&2; exit 1; }
. scripts/apt.sh

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
triple=x86_64-unknown-linux-gnu
dist=target/dist
mkdir -p "$dist/pkg"

# --- tools ---------------------------------------------------------------------------------------
if ! command -v zig >/dev/null 2>&1 && ! python3 -c "import ziglang" >/dev/null 2>&1; then
  say "installing zig (PyPI: ziglang)"
  python3 -m pip install -q ziglang || die "pip install ziglang"
fi
command -v cargo-zigbuild >/dev/null 2>&1 || { say "installing cargo-zigbuild"; cargo install --locked -q cargo-zigbuild || die "cargo install cargo-zigbuild"; }
command -v cargo-deb >/dev/null 2>&1 || { say "installing cargo-deb"; cargo install --locked -q cargo-deb || die "cargo install cargo-deb"; }
command -v objdump >/dev/null 2>&1 || apt_install binutils

# --- Linux binary for glibc 2.17 -------------------------------------------------------------------
say "building astcti-server for $triple, glibc 2.17 (cargo zigbuild)"
cargo zigbuild --locked --release --target "$triple.2.17" --bin astcti-server
bin="target/$triple/release/astcti-server"
[ -x "$bin" ] || die "no $bin"

# The highest GLIBC_x.y any dynamic symbol of $1 needs; it must be 2.17 or older.
glibc_floor() {
  local h newest
  h=$(objdump -T "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1)
  if [ -n "$h" ]; then
    newest=$(printf '%s\n2.17\n' "$h" | sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1)
    [ "$newest" = "2.17" ] || die "$1 needs GLIBC_$h, newer than 2.17"
  fi
  echo "$h"
}
highest=$(glibc_floor "$bin") || exit 1
say "highest glibc symbol version needed: ${highest:-none}"

# --- tarball ---------------------------------------------------------------------------------------
name="astcti-server-$version-x86_64-linux-glibc2.17"
stage="$dist/$name"
rm -rf "$stage"
mkdir -p "$stage/systemd" "$stage/windows" "$stage/docs" "$stage/sql"
cp "$bin" "$stage/"
cp AstCTIServer.xml README.md "$stage/"
cp sql/cti.sql "$stage/sql/"
cp demo/systemd/astcti-server.service "$stage/systemd/"
cp demo/windows/astcti-server-task.xml "$stage/windows/"
cp docs/*.md "$stage/docs/"
tar -C "$dist" -czf "$dist/$name.tar.gz" "$name"
say "wrote $dist/$name.tar.gz"

# --- Debian package --------------------------------------------------------------------------------
sed -e 's|<add key="DIRECTORY" value="[^"]*"|<add key="DIRECTORY" value="/var/log/astcti-server/"|' \
    AstCTIServer.xml > "$dist/pkg/AstCTIServer.xml"
grep -q '/var/log/astcti-server/' "$dist/pkg/AstCTIServer.xml" || die "the packaged configuration has no log DIRECTORY"
cargo deb --no-build --no-strip --target "$triple" --output "$dist/" >/dev/null || die "cargo deb"
deb=$(ls -t "$dist"/astcti-server_*_amd64.deb | head -n 1)
say "wrote $deb"

# --- the agent's program for Linux: glibc 2.17, with the window, as a Debian package ---------------
# (Profile client-release, Cargo.toml: optimised for size, thin LTO: a desktop program. With --check,
# as in CI, profile client-check: the same binaries unoptimised, checked the same way, in a third of
# the time; their sizes are not the release's.)
cprofile=client-release
[ "$check" = yes ] && cprofile=client-check
say "building astcti-client for $triple, glibc 2.17 (cargo zigbuild, feature gui, profile $cprofile)"
cargo zigbuild --locked --profile "$cprofile" --target "$triple.2.17" --features gui --bin astcti-client
cbin="target/$triple/$cprofile/astcti-client"
[ -x "$cbin" ] || die "no $cbin"
client_highest=$(glibc_floor "$cbin") || exit 1
say "astcti-client needs at most GLIBC_${client_highest:-none}; $(du -k "$cbin" | cut -f1) KiB"
cargo deb --variant client --profile "$cprofile" --no-build --target "$triple" --output "$dist/" >/dev/null \
  || die "cargo deb --variant client"
cdeb=$(ls -t "$dist"/astcti-client_*_amd64.deb | head -n 1)
say "wrote $cdeb ($(du -k "$cdeb" | cut -f1) KiB; installed: $(dpkg-deb -f "$cdeb" Installed-Size) KiB)"

# --- Windows binary (where the toolchain allows it) ------------------------------------------------
win=""
if rustup target list --installed 2>/dev/null | grep -q x86_64-pc-windows-gnu \
   || rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1; then
  command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || apt_install gcc-mingw-w64-x86-64 || true
  if command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
    say "building astcti-server.exe (x86_64-pc-windows-gnu)"
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
      cargo build --locked --release --target x86_64-pc-windows-gnu --bin astcti-server
    win="target/x86_64-pc-windows-gnu/release/astcti-server.exe"
    mkdir -p "$dist/$name-windows"
    cp "$win" AstCTIServer.xml demo/windows/astcti-server-task.xml "$dist/$name-windows/"
    say "wrote $dist/$name-windows/astcti-server.exe"
    # The agent's program with its window: astcti-client.exe (a console program: the command
    # line, dial, the trace; --gui) and astcti-client-window.exe (no console: the window, for the
    # Start menu, log-on and tel: links).
    say "building astcti-client.exe and astcti-client-window.exe (x86_64-pc-windows-gnu, feature gui)"
    if CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
         cargo build --locked --profile "$cprofile" --target x86_64-pc-windows-gnu --features gui \
           --bin astcti-client --bin astcti-client-window; then
      winclient="target/x86_64-pc-windows-gnu/$cprofile/astcti-client.exe"
      winwindow="target/x86_64-pc-windows-gnu/$cprofile/astcti-client-window.exe"
      cp "$winclient" "$winwindow" demo/client/astcti-client-tel.reg "$dist/$name-windows/"
      say "wrote $dist/$name-windows/astcti-client.exe and astcti-client-window.exe"
    else
      winclient=""
      say "astcti-client.exe did not build"
    fi
  else
    say "no MinGW linker (Debian's gcc-mingw-w64-x86-64): the Windows binary is not built"
  fi
else
  say "rustup cannot add x86_64-pc-windows-gnu here: the Windows binary is not built"
fi

[ "$check" = yes ] || exit 0

# --- checks ----------------------------------------------------------------------------------------
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "release check: ok: $*"; }
bad() { failed=$((failed + 1)); echo "release check: FAILED: $*" >&2; }

[ -n "$highest" ] && ok "glibc symbols need at most GLIBC_2.17 (highest: GLIBC_$highest)" || bad "no GLIBC symbol versions found"
tar -tzf "$dist/$name.tar.gz" > "$dist/contents.txt"
for f in astcti-server AstCTIServer.xml sql/cti.sql systemd/astcti-server.service windows/astcti-server-task.xml docs/INSTALL.md; do
  grep -qx "$name/$f" "$dist/contents.txt" && ok "tarball has $f" || bad "tarball lacks $f"
done
"$stage/astcti-server" --version | grep -q "astcti-server $version" && ok "the tarball's binary runs here" || bad "the tarball's binary does not run"
depends=$(dpkg-deb -f "$deb" Depends)
[ "$depends" = "libc6 (>= 2.17)" ] && ok "the .deb depends on $depends" || bad "the .deb depends on '$depends'"
if [ "$(id -u)" -eq 0 ]; then
  dpkg -i "$deb" >/dev/null && ok "dpkg -i $deb" || bad "dpkg -i $deb"
  if out=$(/usr/bin/astcti-server --check-config --config /etc/astcti-server/AstCTIServer.xml 2>&1); then
    ok "--check-config from the installed paths"
  else
    bad "--check-config from the installed paths: $out"
  fi
  echo "$out" | grep -q "DIRECTORY = /var/log/astcti-server/" && ok "the packaged configuration logs to /var/log/astcti-server/" || bad "packaged DIRECTORY: $out"
  getent passwd astcti >/dev/null && ok "the system user astcti exists" || bad "no user astcti"
  [ "$(stat -c '%a %U %G' /etc/astcti-server/AstCTIServer.xml)" = "640 root astcti" ] && ok "the conffile is 0640 root:astcti" || bad "conffile: $(stat -c '%a %U %G' /etc/astcti-server/AstCTIServer.xml)"
  [ "$(stat -c '%a %U' /var/log/astcti-server)" = "750 astcti" ] && ok "/var/log/astcti-server is 0750 astcti" || bad "log dir: $(stat -c '%a %U' /var/log/astcti-server)"
  dpkg-query -W -f '${Conffiles}' astcti-server | grep -q /etc/astcti-server/AstCTIServer.xml && ok "AstCTIServer.xml is a conffile" || bad "not a conffile"
  dpkg -r astcti-server >/dev/null && ok "dpkg -r" || bad "dpkg -r"
else
  echo "release check: skipped: installing the .deb needs root"
fi
# The agent's package.
[ -n "$client_highest" ] && ok "astcti-client needs at most GLIBC_2.17 (highest: GLIBC_$client_highest)" \
  || bad "astcti-client: no GLIBC symbol versions found"
cdepends=$(dpkg-deb -f "$cdeb" Depends)
case "$cdepends" in
  "libc6 (>= 2.17), "*libgl1*libxkbcommon-x11-0*) ok "the client .deb depends on $cdepends" ;;
  *) bad "the client .deb depends on '$cdepends'" ;;
esac
if [ "$(id -u)" -eq 0 ]; then
  command -v desktop-file-validate >/dev/null 2>&1 || apt_install desktop-file-utils || true
  dpkg -i "$cdeb" >/dev/null && ok "dpkg -i $cdeb" || bad "dpkg -i $cdeb"
  /usr/bin/astcti-client --version | grep -q "astcti-client $version" && ok "the installed astcti-client runs" || bad "the installed astcti-client does not run"
  grep -qx 'Exec=astcti-client --gui' /etc/xdg/autostart/astcti-client.desktop \
    && ok "log-in autostart starts the window (/etc/xdg/autostart/astcti-client.desktop)" || bad "no autostart of the window"
  for f in /usr/share/applications/astcti-client.desktop /usr/share/applications/astcti-client-dial.desktop; do
    if command -v desktop-file-validate >/dev/null 2>&1; then
      out=$(desktop-file-validate "$f" 2>&1) && ok "$f is a valid desktop entry" || bad "$f: $out"
    fi
  done
  grep -q 'x-scheme-handler/tel=.*astcti-client-dial.desktop' /usr/share/applications/mimeinfo.cache 2>/dev/null \
    && ok "tel: links are handed to astcti-client-dial.desktop (mimeinfo.cache)" || bad "tel: handler not registered"
  dpkg -r astcti-client >/dev/null && ok "dpkg -r astcti-client" || bad "dpkg -r astcti-client"
  if grep -q 'astcti-client-dial.desktop' /usr/share/applications/mimeinfo.cache 2>/dev/null; then
    bad "the tel: handler is still registered after dpkg -r"
  else
    ok "dpkg -r forgets the tel: handler"
  fi
fi
if [ -n "$win" ]; then
  if [ -n "$winclient" ]; then
    # PE subsystem: 3 = console (CUI), 2 = GUI (no console window).
    # (Read whole, then matched: `grep -q` on objdump's pipe would break it under pipefail.)
    sub=$(objdump -p "$winclient" | grep '^Subsystem' || true)
    case "$sub" in *"(Windows CUI)"*) ok "astcti-client.exe is a console program" ;; *) bad "astcti-client.exe subsystem: $sub" ;; esac
    sub=$(objdump -p "$winwindow" | grep '^Subsystem' || true)
    case "$sub" in *"(Windows GUI)"*) ok "astcti-client-window.exe opens no console (GUI subsystem)" ;; *) bad "astcti-client-window.exe subsystem: $sub" ;; esac
    say "sizes: astcti-client.exe $(du -k "$winclient" | cut -f1) KiB, astcti-client-window.exe $(du -k "$winwindow" | cut -f1) KiB"
  fi
  command -v wine >/dev/null 2>&1 || apt_install wine wine64 || true
  if command -v wine >/dev/null 2>&1; then
    export WINEPREFIX="$PWD/target/wine-prefix" WINEDEBUG=-all
    # A copy of the release folder to run in, with scripts/wine/bcryptprimitives.c built beside the
    # exe: Debian 12's Wine 8.0 lacks ProcessPrng, which Rust's std imports (Windows 10+ has it).
    wdir="target/wine-check"
    rm -rf "$wdir" && mkdir -p "$wdir"
    cp "$win" "$wdir/"
    x86_64-w64-mingw32-gcc -shared -O2 -o "$wdir/bcryptprimitives.dll" scripts/wine/bcryptprimitives.c -ladvapi32 \
      || bad "building the Wine shim"
    sed -e 's|<add key="DIRECTORY" value="[^"]*"|<add key="DIRECTORY" value="logs"|' AstCTIServer.xml > "$wdir/AstCTIServer.xml"
    out=$(cd "$wdir" && timeout 120 wine ./astcti-server.exe --check-config 2>/dev/null | tr -d '\r') || true
    if echo "$out" | grep -q "CTI_SERVER_LISTEN_PORT = 9000"; then
      ok "astcti-server.exe --check-config under Wine finds AstCTIServer.xml beside it"
    else
      bad "astcti-server.exe --check-config under Wine: $out"
    fi
    cp tests/fixtures/ami/asterisk-22.10.1/a-inbound-100-answered.ami "$wdir/call.ami"
    out=$(cd "$wdir" && timeout 120 wine ./astcti-server.exe --replay call.ami --agent PJSIP/201 2>/dev/null | tr -d '\r') || true
    if [ "$(echo "$out" | grep -c '^PJSIP/201')" = 4 ] && echo "$out" | grep -q "40401"; then
      ok "astcti-server.exe --replay under Wine: the demo call's 4 notifications with calldata 40401"
    else
      bad "--replay under Wine: $out"
    fi
    # The agent's program: logs in (to scripts/wine/cti-stub.py), takes a dial handed over its named
    # pipe from a second process and sends it as ORIG, and refuses a second instance.
    if [ -n "$winclient" ]; then
      cp "$winclient" "$winwindow" "$wdir/"
      rm -f "$wdir/stub.port" "$wdir/stub.log"
      python3 scripts/wine/cti-stub.py "$wdir/stub.port" "$wdir/stub.log" & stub=$!
      for _ in $(seq 50); do [ -s "$wdir/stub.port" ] && break; sleep 0.1; done
      cat > "$wdir/AstCTIClient.config" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<LocalAppSettings className="AstCTIClient.LocalAppSettings">
  <CTIOutboundContextes className="AstCTIClient.CTIOutboundContextCollection">
    <CTIOutboundContext className="AstCTIClient.CTIOutboundContext">
      <Context>astctidemo</Context>
      <Priority>1</Priority>
    </CTIOutboundContext>
  </CTIOutboundContextes>
  <Host>127.0.0.1</Host>
  <Port>$(cat "$wdir/stub.port")</Port>
  <Username>agent</Username>
  <Password>agent pw</Password>
  <PhoneExt>PJSIP/201</PhoneExt>
</LocalAppSettings>
EOF
      (cd "$wdir" && exec timeout 150 wine ./astcti-client.exe --settings AstCTIClient.config >client.out 2>&1) & wclient=$!
      for _ in $(seq 600); do grep -q '^PASS ' "$wdir/stub.log" 2>/dev/null && break; sleep 0.1; done
      if grep -q '^PASS ' "$wdir/stub.log" 2>/dev/null; then
        ok "astcti-client.exe under Wine logs in"
      else
        bad "astcti-client.exe under Wine did not log in: $(tr -d '\r' < "$wdir/client.out")"
      fi
      out=$(cd "$wdir" && timeout 60 wine ./astcti-client.exe dial 0215552001 --settings AstCTIClient.config 2>&1 | tr -d '\r') || true
      for _ in $(seq 50); do grep -q '^ORIG 0215552001|' "$wdir/stub.log" 2>/dev/null && break; sleep 0.1; done
      if echo "$out" | grep -q "handed to the running client" && grep -q '^ORIG 0215552001|' "$wdir/stub.log"; then
        ok "astcti-client.exe dial under Wine: handed over the named pipe, sent as $(grep '^ORIG' "$wdir/stub.log" | head -1)"
      else
        bad "astcti-client.exe dial under Wine: $out / $(cat "$wdir/stub.log" 2>/dev/null)"
      fi
      # A tel: link: demo/client/astcti-client-tel.reg with this folder's path, imported under
      # HKEY_CLASSES_ROOT (Wine 8 does not read the per-user HKCU\Software\Classes that Windows
      # merges into it), then opened through ShellExecute as a browser would.
      exe=$(winepath -w "$PWD/$wdir/astcti-client-window.exe" 2>/dev/null | tr -d '\r' | sed 's/\\/\\\\\\\\/g')
      sed -e "s|C:\\\\\\\\Program Files\\\\\\\\astcti\\\\\\\\astcti-client-window.exe|$exe|g" \
          -e 's/HKEY_CURRENT_USER\\Software\\Classes/HKEY_CLASSES_ROOT/' demo/client/astcti-client-tel.reg > "$wdir/tel.reg"
      (cd "$wdir" && wine regedit /S tel.reg && timeout 60 wine start tel:0215552009) >/dev/null 2>&1 || true
      for _ in $(seq 100); do grep -q '^ORIG 0215552009|' "$wdir/stub.log" 2>/dev/null && break; sleep 0.1; done
      if grep -q '^ORIG 0215552009|' "$wdir/stub.log"; then
        ok "a tel: link under Wine (demo/client/astcti-client-tel.reg: astcti-client-window.exe, no console) dials through the running client"
      else
        bad "a tel: link under Wine did not dial: $(grep command "$wdir/tel.reg" | head -1)"
      fi
      out=$(cd "$wdir" && timeout 60 wine ./astcti-client.exe --settings AstCTIClient.config 2>&1 | tr -d '\r') || true
      if echo "$out" | grep -q "another astcti-client runs for this user"; then
        ok "a second astcti-client.exe of the same user under Wine stops: $out"
      else
        bad "a second astcti-client.exe under Wine: $out"
      fi
      wineserver -k 2>/dev/null || true
      kill "$stub" "$wclient" 2>/dev/null || true
      wait "$stub" "$wclient" 2>/dev/null || true
    fi
  else
    echo "release check: skipped: no wine to run the Windows binary"
  fi
fi
echo "release: checks: $passed ok, $failed failed"
[ "$failed" -eq 0 ]
