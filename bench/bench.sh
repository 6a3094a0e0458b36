#!/usr/bin/env bash
# Entry point of `make bench` (see bench/README.md).
#
# Usage: bench/bench.sh [--quick] [--profile] [bench.py options...]
#
# Installs the packages the benchmark needs and `make test` does not (as
# root with apt-get; as another user it prints the command and stops), raises
# the open-files limit for the servers and the idle-connection client, and
# runs bench/bench.py with Debian's python3 (/usr/bin/python3, which sees
# python3-matplotlib). --profile runs `bench.py profile` for ours and stock
# event instead of the benchmark.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Package -> a file it installs (what the benchmark runs).
PACKAGES=(
    apache2:/usr/sbin/apache2
    wrk:/usr/bin/wrk
    nghttp2-client:/usr/bin/h2load
    openssl:/usr/bin/openssl
    nginx:/usr/sbin/nginx
    php-fpm:/usr/share/doc/php-fpm/copyright
    slowhttptest:/usr/bin/slowhttptest
    python3:/usr/bin/python3
    python3-matplotlib:/usr/lib/python3/dist-packages/matplotlib/__init__.py
)

profile=0
args=()
for a in "$@"; do
    case "$a" in
        --profile) profile=1 ;;
        *) args+=("$a") ;;
    esac
done
if [ "$profile" -eq 1 ]; then
    PACKAGES+=(linux-perf:/usr/bin/perf strace:/usr/bin/strace)
fi

missing=()
for entry in "${PACKAGES[@]}"; do
    pkg=${entry%%:*}
    file=${entry#*:}
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ] || [ ! -e "$file" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench: missing packages: ${missing[*]}; install them with:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "bench: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Debian's nginx package would start its own server on port 80 where
    # services may start; the benchmark never uses that one.
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null
fi

# 5,000 idle connections need file descriptors: the servers inherit this limit.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then
    ulimit -n 65536
else
    ulimit -n "$hard"
fi
if [ "$(ulimit -n)" -lt 6000 ]; then
    echo "bench: open-files limit is $(ulimit -n); scenario 4 needs more than 5,000" >&2
fi

if [ "$profile" -eq 1 ]; then
    for server in ours event; do
        /usr/bin/python3 "$here/bench.py" profile --server "$server" "${args[@]}"
    done
    exit 0
fi
exec /usr/bin/python3 "$here/bench.py" run "${args[@]}"
