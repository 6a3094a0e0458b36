#!/usr/bin/env bash
# Install the Debian packages that building and testing mod_mpm_event_rs need.
#
# Usage: scripts/deps.sh [--check]
#   (no option)  install whatever is missing: as root with apt-get; as any other
#                user, print the exact sudo command and fail.
#   --check      only report what is missing (exit 1 if anything is).
#
# The package list below is the only one in the repository; `make deps` and
# `make test` (and so .ci/run) go through this script.
set -euo pipefail

PACKAGES=(
    # build: bindgen needs libclang; apxs, httpd and APR headers
    apache2-dev
    libclang-dev
    clang
    # tests: a real httpd to load the module into, an HTTP client
    apache2
    curl
    perl
    # load and protocol tools, mod_perl for tests that use it
    wrk
    apache2-utils
    nghttp2-client
    libapache2-mod-perl2
    # the Apache::Test suite (tests/apache): TLS client, certificate
    libio-socket-ssl-perl
    openssl
    # tests/e2e_backends.rs: the server in front of PHP-FPM and a proxied nginx
    php-fpm
    nginx
    # scripts/build-httpd.sh: a second httpd from source (APR is Debian's)
    build-essential
    libssl-dev
    libnghttp2-dev
    libpcre2-dev
    zlib1g-dev
    python3-pip
    # make deb and its checks: dpkg-shlibdeps, objcopy, lintian
    dpkg-dev
    binutils
    lintian
)

check_only=0
case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps: all ${#PACKAGES[@]} packages installed (${PACKAGES[*]})"
    exit 0
fi

echo "deps: missing: ${missing[*]}"
if [ "$check_only" -eq 1 ]; then
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: not root; install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" </dev/null
echo "deps: installed ${missing[*]}"
