#!/usr/bin/env bash
# Builds the Debian package of the module, offline, with dpkg-deb:
# build/libapache2-mpm-event-rs_<version>_<arch>.deb, and the module's debug
# symbols beside it (build/mod_mpm_event_rs.so.debug, linked from the
# stripped module by .gnu_debuglink).
#
# Usage: scripts/deb.sh MODULE.so
#   The package installs the module into `apxs -q LIBEXECDIR` ($APXS) and
#   Debian's mods-available/mpm_event_rs.{load,conf}; its maintainer scripts
#   (conf/debian/package/) switch apache2 to this MPM on install and back
#   to stock event on removal, with Debian's apache2-maintscript-helper.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module=${1:?usage: $0 MODULE.so}
apxs=${APXS:-apxs}
die() { echo "deb: $*" >&2; exit 1; }
[ -f "$module" ] || die "no module at $module (run make)"

name=libapache2-mpm-event-rs
# Who answers for the package: $DEB_MAINTAINER ("Name <address>"), else the
# author of the commit it is built from.
maintainer=${DEB_MAINTAINER:-$(git -C "$repo" log -1 --format='%an <%ae>' 2>/dev/null || true)}
[ -n "$maintainer" ] || die "set DEB_MAINTAINER=\"Name <address>\" (no git history to take it from)"
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
libexecdir=$("$apxs" -q LIBEXECDIR) || die "$apxs -q LIBEXECDIR failed (apt-get install apache2-dev)"
includedir=$("$apxs" -q INCLUDEDIR)
# The module API it was built for: what apache2-bin provides as
# apache2-api-<MMN major>.
mmn=$(sed -n 's/^#define MODULE_MAGIC_NUMBER_MAJOR \([0-9]*\).*/\1/p' "$includedir/ap_mmn.h")
[ -n "$mmn" ] || die "no MODULE_MAGIC_NUMBER_MAJOR in $includedir/ap_mmn.h"

out=$repo/build
stage=$out/deb/$name
rm -rf "$out/deb"
install -d -m 755 "$stage/DEBIAN" "$stage$libexecdir" "$stage/etc/apache2/mods-available" \
    "$stage/usr/share/doc/$name"

# The module, stripped; its debug information goes to a file of its own.
so=$stage$libexecdir/mod_mpm_event_rs.so
debug=$out/mod_mpm_event_rs.so.debug
objcopy --only-keep-debug "$module" "$debug"
objcopy --strip-unneeded --remove-section=.comment --remove-section=.note \
    --add-gnu-debuglink="$debug" "$module" "$so"
chmod 644 "$so" "$debug"

sed -e "s|@MODULE@|$libexecdir/mod_mpm_event_rs.so|g" "$repo/conf/debian/mpm_event_rs.load.in" \
    > "$stage/etc/apache2/mods-available/mpm_event_rs.load"
install -m 644 "$repo/conf/debian/mpm_event_rs.conf" "$stage/etc/apache2/mods-available/"
chmod 644 "$stage/etc/apache2/mods-available/"*

doc=$stage/usr/share/doc/$name
install -m 644 "$repo/conf/debian/package/copyright" "$doc/copyright"
date=$(date -u -R -d "@$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)")
printf '%s (%s) unstable; urgency=medium\n\n  * Built from the mod_mpm_event_rs repository.\n\n -- %s  %s\n' \
    "$name" "$version" "$maintainer" "$date" | gzip -9n > "$doc/changelog.gz"
chmod 644 "$doc/changelog.gz"

for script in postinst prerm postrm; do
    install -m 755 "$repo/conf/debian/package/$script" "$stage/DEBIAN/$script"
done
printf '/etc/apache2/mods-available/mpm_event_rs.conf\n/etc/apache2/mods-available/mpm_event_rs.load\n' \
    > "$stage/DEBIAN/conffiles"

# Shared libraries the module needs, as dpkg-shlibdeps finds them.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$name" "$name" > "$tmp/debian/control"
shlibs=$(cd "$tmp" && dpkg-shlibdeps -O -e "$so" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies (apt-get install dpkg-dev)"

size=$(du -k -s --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s|@VERSION@|$version|; s|@ARCH@|$arch|; s|@SIZE@|$size|; s|@MMN@|$mmn|; s|@SHLIBS@|$shlibs|; s|@MAINTAINER@|$maintainer|" \
    "$repo/conf/debian/package/control.in" > "$stage/DEBIAN/control"

(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort | xargs md5sum) \
    > "$stage/DEBIAN/md5sums"
chmod 644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

deb=$out/${name}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "built $deb ($(du -k "$so" | cut -f1) KiB module; debug symbols in $debug)"
