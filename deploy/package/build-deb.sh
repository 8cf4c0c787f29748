#!/usr/bin/env bash
# Builds the Debian package with dpkg-deb (no other packaging tooling): vigild and vigil in release with the Swift
# runtime linked statically (--static-swift-stdlib), so a gateway needs no Swift toolchain, only the Debian
# libraries they link (found with ldd and dpkg -S, declared in Depends). Prints the package's path last.
#
#   SWIFT   the swift driver (default: swift)
#   OUT     where the package goes (default: .build-package)
set -euo pipefail
cd "$(dirname "$0")/../.."
SWIFT=${SWIFT:-swift}
OUT=${OUT:-.build-package}
RELEASE=.build-release
TOOLS=.build-tools

for product in vigild vigil; do
    "$SWIFT" build -c release --static-swift-stdlib --scratch-path "$RELEASE" --product "$product" >&2
done
# ArgumentParser's man page generator (a product of the argument-parser package; debug is enough).
"$SWIFT" build --scratch-path "$TOOLS" --product generate-manual >&2
bin="$RELEASE/release"
version=$("$bin/vigil" --version)
architecture=$(dpkg --print-architecture)

stage="$OUT/vigil_${version}_$architecture"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
BINDIR="$bin" MANTOOL="$TOOLS/debug/generate-manual" DESTDIR="$stage" PREFIX=/usr SYSCONFDIR=/etc \
    UNITDIR=/lib/systemd/system ./deploy/package/install.sh >&2
# Debug information stays in the build tree: the package carries stripped binaries.
strip --strip-unneeded "$stage/usr/sbin/vigild" "$stage/usr/bin/vigil"

# Depends: the package of every shared library the binaries load, except the dynamic loader's own.
depends=$(for binary in "$bin/vigild" "$bin/vigil"; do ldd "$binary"; done \
    | awk '/=> \// { print $3 }' | sort -u \
    | while read -r library; do dpkg -S "$(readlink -f "$library")" 2>/dev/null || dpkg -S "$library"; done \
    | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g')
if ldd "$bin/vigild" | grep -q libswiftCore; then
    echo "build-deb.sh: vigild links the Swift runtime dynamically; the package would need a toolchain" >&2
    exit 1
fi
size=$(du -sk "$stage" | cut -f1)

cat > "$stage/DEBIAN/control" <<CONTROL
Package: vigil
Version: $version
Architecture: $architecture
Maintainer: Vigil maintainers <maintainers@vigil.invalid>
Installed-Size: $size
Depends: $depends
Recommends: iproute2, nftables
Section: net
Priority: optional
Homepage: https://vigil.invalid/
Description: IPsec failover controller (crypto maps with ordered peer lists)
 vigild keeps site-to-site IPsec tunnels up when a remote gateway dies: Cisco-style
 crypto maps with ordered peer lists, RFC 3706 DPD and IKEv2 liveness checks, failover
 to the next listed peer with IKEv2 or IKEv1, and the kernel's XFRM SAs, policies and
 routes reprogrammed make-before-break. vigil is its command-line client.
CONTROL
printf '%s\n' /etc/vigil/vigil.yaml /etc/vigil/vigil.secrets.yaml > "$stage/DEBIAN/conffiles"

cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
# The keys stay readable by root alone (vigild refuses a secrets file with group or other access).
chown root:root /etc/vigil/vigil.secrets.yaml
chmod 0600 /etc/vigil/vigil.secrets.yaml
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
POSTINST
cat > "$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop vigild.service || true
fi
exit 0
PRERM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm"

package="$OUT/vigil_${version}_$architecture.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$package" >&2
echo "$package"
