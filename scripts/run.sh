#!/usr/bin/env bash
# Start Apache httpd in the foreground with an MPM module and the default
# configuration of conf/run/ (used by `make run`).
#
# Usage: scripts/run.sh --module PATH.so [--port 8080] [--run-dir DIR]
#                       [--loglevel info] [--httpd /usr/sbin/apache2]
#
# The run directory gets httpd.conf (from conf/run/httpd.conf.in), a copy of
# conf/run/htdocs, the pid file, mutex files and access.log. The error log
# goes to this terminal. Ctrl-C (SIGINT) or SIGTERM to the pid in
# DIR/httpd.pid stops the server.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module=""
port=8080
run_dir="$repo/build/run"
loglevel=info
httpd=/usr/sbin/apache2

while [ $# -gt 0 ]; do
    case "$1" in
        --module)   module=$2; shift 2 ;;
        --port)     port=$2; shift 2 ;;
        --run-dir)  run_dir=$2; shift 2 ;;
        --loglevel) loglevel=$2; shift 2 ;;
        --httpd)    httpd=$2; shift 2 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

die() { echo "run.sh: $*" >&2; exit 1; }

[ -n "$module" ] || die "--module is required"
case "$module" in /*) ;; *) module="$(pwd)/$module" ;; esac
[ -f "$module" ] || die "no module at $module (run 'make' first?)"
[ -x "$httpd" ] || die "$httpd not found (apt-get install apache2, or 'make deps')"
case "$port" in ''|*[!0-9]*) die "bad port '$port'" ;; esac
case "$run_dir" in /*) ;; *) run_dir="$(pwd)/$run_dir" ;; esac

modules_dir=$("${APXS:-apxs}" -q LIBEXECDIR 2>/dev/null || true)
[ -n "$modules_dir" ] || { echo "run: '${APXS:-apxs} -q LIBEXECDIR' failed (apt-get install apache2-dev, or set APXS)" >&2; exit 1; }

user=www-data
group=www-data
if [ "$(id -u)" -ne 0 ]; then
    # not root: mod_unixd does not switch users; name ourselves anyway
    user=$(id -un)
    group=$(id -gn)
fi

prepare() {
    mkdir -p -m 0755 "$1"
    chmod 0755 "$1"
    rm -rf "$1/htdocs"
    cp -R "$repo/conf/run/htdocs" "$1/htdocs"
    chmod -R u=rwX,go=rX "$1/htdocs"
}

prepare "$run_dir"

# As root the children run as www-data, which must be able to reach the
# document root (and the mutex files in the run directory). When the run
# directory lies under a path www-data cannot traverse, use one in /tmp.
if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null \
    && ! runuser -u "$user" -- test -r "$run_dir/htdocs/index.html" 2>/dev/null; then
    fallback="${TMPDIR:-/tmp}/mod_mpm_event_rs-run-$port"
    echo "run.sh: $user cannot read $run_dir; using $fallback" >&2
    run_dir=$fallback
    prepare "$run_dir"
fi

# httpd opens the error log by name; /dev/stderr is reopened through
# /proc/self/fd/2, which fails when stderr is a file we may not write to
# (a socket, or another user's file). Fall back to a file then.
error_log=/dev/stderr
if [ ! -w /proc/self/fd/2 ]; then
    error_log="$run_dir/error.log"
fi

conf="$run_dir/httpd.conf"
sed -e "s|@RUN_DIR@|$run_dir|g" \
    -e "s|@MODULE@|$module|g" \
    -e "s|@MODULES_DIR@|$modules_dir|g" \
    -e "s|@PORT@|$port|g" \
    -e "s|@LOGLEVEL@|$loglevel|g" \
    -e "s|@ERROR_LOG@|$error_log|g" \
    -e "s|@USER@|$user|g" \
    -e "s|@GROUP@|$group|g" \
    "$repo/conf/run/httpd.conf.in" > "$conf"

cat <<MSG
run.sh: module     $module
run.sh: config     $conf
run.sh: run dir    $run_dir (pid file httpd.pid, access.log)
run.sh: error log  $error_log
run.sh: listening  http://127.0.0.1:$port/  (status: /server-status, /server-status?auto)
run.sh: stop with Ctrl-C, or: kill -TERM \$(cat $run_dir/httpd.pid)
MSG

exec "$httpd" -f "$conf" -DFOREGROUND
