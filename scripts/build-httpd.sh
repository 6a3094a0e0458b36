#!/usr/bin/env bash
# Builds httpd 2.4.69 from source, as administrators who compile their own
# have it (the official container image's layout: one prefix, every MPM and
# module shared, Debian's APR), into a cache outside the repository, once.
# The source comes from a registry package: the sdist of PyPI's
# mod-wsgi-httpd 2.4.69.1 carries upstream/httpd-2.4.69.tar.gz.
#
# Usage: scripts/build-httpd.sh [PREFIX]
#   PREFIX defaults to $HTTPD_CACHE/httpd-2.4.69, HTTPD_CACHE to
#   /var/cache/mod_mpm_event_rs (as root) or ~/.cache/mod_mpm_event_rs.
#   Prints the prefix (its bin/apxs and bin/httpd are what the tests take)
#   as its last line. Build dependencies: scripts/deps.sh.
set -euo pipefail
version=2.4.69
if [ "$(id -u)" = 0 ]; then cache=${HTTPD_CACHE:-/var/cache/mod_mpm_event_rs}; else cache=${HTTPD_CACHE:-$HOME/.cache/mod_mpm_event_rs}; fi
prefix=${1:-$cache/httpd-$version}
die() { echo "build-httpd: $*" >&2; exit 1; }

if [ -x "$prefix/bin/httpd" ] && [ -x "$prefix/bin/apxs" ] && "$prefix/bin/httpd" -v | grep -q "Apache/$version"; then
    echo "$prefix"
    exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-httpd: downloading mod-wsgi-httpd's sdist (httpd $version source) from PyPI" >&2
python3 -m pip download --quiet --no-deps --no-binary :all: "mod-wsgi-httpd==$version.1" -d "$work" >&2 ||
    die "pip download of mod-wsgi-httpd==$version.1 failed"
tar -xzf "$work"/mod_wsgi_httpd-*.tar.gz -C "$work"
tar -xzf "$work"/mod_wsgi_httpd-*/upstream/httpd-$version.tar.gz -C "$work"
cd "$work/httpd-$version"
echo "build-httpd: configure and make (a few minutes)" >&2
./configure --prefix="$prefix" --with-apr=/usr/bin/apr-1-config --with-apr-util=/usr/bin/apu-1-config \
    --with-pcre=/usr/bin/pcre2-config --enable-mpms-shared=all --enable-mods-shared=reallyall \
    --enable-ssl --enable-http2 >"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log" >&2; die "configure failed"; }
make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; die "make failed"; }
make install >"$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; die "make install failed"; }
echo "$prefix"
