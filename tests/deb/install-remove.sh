#!/usr/bin/env bash
# The Debian package, installed and removed as an administrator would (as
# root, since it installs a package): installing switches apache2 to this
# MPM (a2query -M), Debian's own configuration serves a request with it
# (bound to 127.0.0.1 only for the test), removing switches back to stock
# event, and after purging /etc/apache2 is as it was.
#
# Usage: tests/deb/install-remove.sh PACKAGE.deb
# Prints "N passed, N failed" as its last line; exits 1 on a failure. As a
# user other than root, or where apache2 is not on stock event to begin
# with, it says why and does nothing.
set -euo pipefail
deb=${1:?usage: $0 PACKAGE.deb}
name=libapache2-mpm-event-rs
passed=0
failed=0
check() {
    local what=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok: $what"; else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
skip() { echo "deb test: skipped: $*"; exit 0; }

[ "$(id -u)" = 0 ] || skip "installing a package needs root"
[ "$(a2query -M 2>/dev/null)" = event ] || skip "apache2 is not on the stock event MPM to begin with"
dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed" && skip "$name is installed already"
set +u
. /etc/apache2/envvars
set -u
[ -e "$APACHE_PID_FILE" ] && skip "an apache2 runs already ($APACHE_PID_FILE)"

snapshot() {
    (cd /etc/apache2 && find . -printf '%p -> %l\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum)
}
before=$(snapshot)
ports=/etc/apache2/ports.conf
saved=$(mktemp)
cp -p "$ports" "$saved"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop_apache() {
    [ -e "$APACHE_PID_FILE" ] || return 0
    local pid
    pid=$(cat "$APACHE_PID_FILE")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    stop_apache
    dpkg --purge "$name" >/dev/null 2>&1 || true
    cp -p "$saved" "$ports"
    rm -f "$saved"
}
trap cleanup EXIT

# Debian's configuration, listening on loopback only.
echo "Listen 127.0.0.1:$port" > "$ports"
dpkg -i "$deb" >/dev/null
# a2query names the MPM "event" either way (it matches mpm_event_rs as
# mpm_event*); which module is enabled is what differs.
enabled() { a2query -q -m "$1" >/dev/null 2>&1; }
check "installing enables mpm_event_rs" enabled mpm_event_rs
check "installing disables stock mpm_event" sh -c '! a2query -q -m mpm_event'
check "a2query -M still finds one MPM ($(a2query -M 2>&1))" test "$(a2query -M 2>&1)" = event
check "apache2ctl configtest" apache2ctl configtest

apache2ctl start
served=0
for _ in $(seq 50); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/"; then served=1; break; fi
    sleep 0.1
done
check "Debian's configuration serves a request" test "$served" = 1
child=$(pgrep -P "$(cat "$APACHE_PID_FILE")" | head -1 || true)
check "the server runs this module" grep -q "mod_mpm_event_rs.so" "/proc/${child:-0}/maps"
stop_apache

dpkg -r "$name" >/dev/null
check "removing enables stock mpm_event again" enabled mpm_event
check "removing disables mpm_event_rs" sh -c '! a2query -q -m mpm_event_rs'
check "a2query -M finds one MPM ($(a2query -M 2>&1))" test "$(a2query -M 2>&1)" = event
dpkg --purge "$name" >/dev/null
cp -p "$saved" "$ports"
after=$(snapshot)
check "/etc/apache2 is as before" test "$before" = "$after"
[ "$before" = "$after" ] || diff <(echo "$before") <(echo "$after") || true

echo "deb: $passed passed, $failed failed"
[ "$failed" = 0 ]
