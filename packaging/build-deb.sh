#!/usr/bin/env bash
# Builds libnginx-mod-http-studio-testusers_VERSION_ARCH.deb from the
# module `make build` left in objs/, laid out the way Debian packages its
# own nginx modules (libnginx-mod-http-geoip and friends, made by dh_nginx):
#
#   /usr/lib/nginx/modules/ngx_http_studio_testusers_module.so
#   /usr/share/nginx/modules-available/mod-http-studio-testusers.conf
#   /usr/share/doc/libnginx-mod-http-studio-testusers/...
#
# the symlink /etc/nginx/modules-enabled/50-mod-http-studio-testusers.conf
# made by postinst and taken away by prerm/postrm (dh_nginx's own scripts,
# from nginx-dev), and Depends on the nginx ABI the module was built
# against (nginx:abi from nginx-dev) plus what dpkg-shlibdeps finds.
#
#   packaging/build-deb.sh [-o OUTDIR]     (default OUTDIR: build/)
#
# The version is packaging/VERSION.  Prints the path of the .deb last.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG=libnginx-mod-http-studio-testusers
MODNAME=http-studio-testusers                # dh_nginx: package minus libnginx-mod-
SO=ngx_http_studio_testusers_module.so
SNIPPET=mod-$MODNAME.conf
PRIO=50                                      # dh_nginx: 50 for http-* modules
NGX_SRC=${NGX_SRC:-/usr/share/nginx/src}
OUTDIR=$ROOT/build

while getopts o: opt; do
    case $opt in
        o) OUTDIR=$OPTARG ;;
        *) echo "usage: $0 [-o OUTDIR]" >&2; exit 2 ;;
    esac
done

die() { echo "build-deb: $*" >&2; exit 1; }

for tool in dpkg-deb dpkg-shlibdeps strip gzip md5sum; do
    command -v "$tool" >/dev/null \
        || die "$tool is missing (packages dpkg-dev, binutils; 'make deps' installs them with nginx-dev)"
done

VERSION=$(tr -d ' \t\r\n' < "$ROOT/packaging/VERSION")
[[ $VERSION =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] \
    || die "packaging/VERSION: '$VERSION' is not a Debian version"

MODULE=$ROOT/objs/$SO
[ -f "$MODULE" ] || die "$MODULE is missing: run 'make build'"

# the ABI of the nginx the module was compiled against: the copy of
# nginx-dev's tree that `make build` configured, else nginx-dev itself
ABIFILE=$ROOT/build/nginx-src/debian/libnginx-mod.abisubstvars
[ -f "$ABIFILE" ] || ABIFILE=$NGX_SRC/debian/libnginx-mod.abisubstvars
[ -f "$ABIFILE" ] || die "no libnginx-mod.abisubstvars: is nginx-dev installed?"
ABI=$(sed -n 's/^nginx:abi=//p' "$ABIFILE")
[ -n "$ABI" ] || die "$ABIFILE has no nginx:abi"

if dpkg-query -W -f='${Provides}\n' nginx 2>/dev/null | grep -qw -- "$ABI"; then
    :
else
    echo "build-deb: warning: the installed nginx does not provide $ABI" >&2
fi

AUTOSCRIPTS=/usr/share/debhelper/autoscripts
for s in postinst prerm postrm; do
    [ -f "$AUTOSCRIPTS/$s-nginx" ] \
        || die "$AUTOSCRIPTS/$s-nginx is missing: is nginx-dev installed?"
done

ARCH=$(dpkg --print-architecture)

# timestamps: the last commit's, so the same tree gives the same package
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$COMMIT" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain \
        -- config ngx_studio_testusers_module 2>/dev/null)" ]; then
    COMMIT="$COMMIT with uncommitted changes"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/build-deb-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# the debhelper layout, so dpkg-shlibdeps knows where it is
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" \
    > "$WORK/control"
mkdir -p "$WORK/debian"
mv "$WORK/control" "$WORK/debian/control"
STAGE=$WORK/debian/$PKG
DOC=$STAGE/usr/share/doc/$PKG

umask 022
install -d "$STAGE/usr/lib/nginx/modules" \
           "$STAGE/usr/share/nginx/modules-available" \
           "$DOC/docs" "$DOC/examples" "$STAGE/DEBIAN"

# the module, stripped as dh_strip strips shared objects
install -m 0644 "$MODULE" "$STAGE/usr/lib/nginx/modules/$SO"
strip --remove-section=.comment --remove-section=.note --strip-unneeded \
    "$STAGE/usr/lib/nginx/modules/$SO"

# the load snippet, as dh_nginx writes it (relative to nginx's prefix,
# /usr/share/nginx, whose modules -> /usr/lib/nginx/modules)
printf 'load_module modules/%s;\n' "$SO" \
    > "$STAGE/usr/share/nginx/modules-available/$SNIPPET"
chmod 0644 "$STAGE/usr/share/nginx/modules-available/$SNIPPET"

# documentation, as dh_installdocs/dh_installexamples/dh_installchangelogs
install -m 0644 "$ROOT/packaging/copyright" "$DOC/copyright"
install -m 0644 "$ROOT/README.md" "$DOC/README.md"
install -m 0644 "$ROOT"/docs/*.md "$DOC/docs/"
install -m 0644 "$ROOT"/examples/* "$DOC/examples/"
{
    printf '%s (%s) bookworm; urgency=medium\n\n' "$PKG" "$VERSION"
    printf '  * Built from ngx_studio_testusers_module commit %s.\n\n' "$COMMIT"
    printf ' -- %s  %s\n' \
        "$(sed -n 's/^Maintainer: //p' "$ROOT/packaging/control.in")" \
        "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} > "$DOC/changelog"
# Debian policy 12.3 (dh_compress): changelogs and docs over 4 kB
find "$DOC" -type f \( -size +4k -o -name 'changelog*' \) ! -name copyright \
    ! -name '*.gz' -exec gzip -9nf {} +

# maintainer scripts: dh_nginx's own autoscripts from nginx-dev, wrapped
# the way debhelper wraps them
for s in postinst prerm postrm; do
    {
        printf '#!/bin/sh\nset -e\n'
        printf '# Automatically added by dh_nginx (from %s/%s-nginx)\n' \
            "$AUTOSCRIPTS" "$s"
        sed "s|#NAMES#|$SNIPPET:$PRIO-$SNIPPET|g" "$AUTOSCRIPTS/$s-nginx"
        printf '# End automatically added section\n'
    } > "$STAGE/DEBIAN/$s"
    chmod 0755 "$STAGE/DEBIAN/$s"
done

# Depends: the nginx ABI, then the shared libraries (libc6, libjansson4,
# libssl3) with the versions their shlibs/symbols files ask for
SHLIBS=$(cd "$WORK" && dpkg-shlibdeps -O -e"$STAGE/usr/lib/nginx/modules/$SO" \
         | sed -n 's/^shlibs:Depends=//p')
[ -n "$SHLIBS" ] || die "dpkg-shlibdeps found no dependencies"
DEPENDS="$ABI, $SHLIBS"

(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' \
    | LC_ALL=C sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/md5sums"

INSTALLED_SIZE=$(du -sk --apparent-size --exclude=DEBIAN "$STAGE" | cut -f1)

sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" \
    -e "s|@INSTALLED_SIZE@|$INSTALLED_SIZE|" -e "s|@DEPENDS@|$DEPENDS|" \
    "$ROOT/packaging/control.in" > "$STAGE/DEBIAN/control"
chmod 0644 "$STAGE/DEBIAN/control"

find "$STAGE" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUTDIR"
DEB=$(cd "$OUTDIR" && pwd)/${PKG}_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null

echo "$DEB"
