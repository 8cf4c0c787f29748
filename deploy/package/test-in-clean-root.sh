#!/usr/bin/env bash
# The Debian package on a gateway with no Swift toolchain: builds it (build-deb.sh), makes a clean Debian 12 root
# with debootstrap (minbase plus the libraries the package declares, from this machine's own apt source; cached
# as a tarball in .build-package/), installs the package there with dpkg (which checks its Depends), and runs
# `vigild --check` on the installed example configuration and `vigil --version` inside it with chroot.
# Then the lab's smoke test runs the installed vigild against strongSwan (VIGIL_VIGILD; needs the test build).
# Fails, naming the step, when any of that goes wrong.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-.build-package}
SUITE=bookworm
package=$(OUT="$OUT" ./deploy/package/build-deb.sh | tail -1)
[ -f "$package" ] || { echo "test-in-clean-root: no package built" >&2; exit 1; }

command -v debootstrap > /dev/null || { echo "test-in-clean-root: debootstrap is not installed (deploy/install-deps.sh installs it)" >&2; exit 1; }
# The Debian mirror this machine's apt uses (deb822 or one-line sources).
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "test-in-clean-root: no Debian mirror in this machine's apt sources" >&2; exit 1; }

libraries=$(dpkg-deb -f "$package" Depends | tr -d ' ')
tarball="$OUT/$SUITE-minbase-$(echo "$libraries" | md5sum | cut -c1-8).tar.gz"
if [ ! -f "$tarball" ]; then
    echo "== debootstrap $SUITE (minbase + $libraries) into a tarball" >&2
    debootstrap --variant=minbase --include="$libraries" --make-tarball="$tarball.partial" "$SUITE" "$OUT/tarball-work" "$mirror" >&2
    mv "$tarball.partial" "$tarball"
    rm -rf "$OUT/tarball-work"
fi
root="$OUT/clean-root"
rm -rf "$root"
echo "== debootstrap $SUITE from the cached tarball" >&2
debootstrap --variant=minbase --include="$libraries" --unpack-tarball="$(realpath "$tarball")" "$SUITE" "$root" "$mirror" >&2

if find "$root" -name 'libswiftCore*' -o -name 'swift' -type f | grep -q .; then
    echo "test-in-clean-root: the clean root has Swift in it" >&2; exit 1
fi
# A gateway has /proc; the statically linked Swift runtime reads its arguments from /proc/self/cmdline.
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
cp "$package" "$root/tmp/vigil.deb"
echo "== dpkg -i in the clean root" >&2
chroot "$root" dpkg -i /tmp/vigil.deb >&2 || { echo "test-in-clean-root: dpkg -i refused the package" >&2; exit 1; }
echo "== vigild --check and vigil --version in the clean root" >&2
chroot "$root" /usr/sbin/vigild --config /etc/vigil/vigil.yaml --check >&2 \
    || { echo "test-in-clean-root: vigild --check failed in the clean root" >&2; exit 1; }
version=$(chroot "$root" /usr/bin/vigil --version)
[ "$version" = "$(dpkg-deb -f "$package" Version)" ] \
    || { echo "test-in-clean-root: vigil --version says '$version'" >&2; exit 1; }
mode=$(stat -c %a "$root/etc/vigil/vigil.secrets.yaml")
[ "$mode" = 600 ] || { echo "test-in-clean-root: the secrets file is $mode, not 600" >&2; exit 1; }
echo "== the package runs in a clean $SUITE root: vigild --check passed, vigil $version" >&2
umount "$root/proc"
trap - EXIT
echo "== the installed vigild against strongSwan (VigildSmokeTests)" >&2
VIGIL_VIGILD="$(realpath "$root/usr/sbin/vigild")" "${SWIFT:-swift}" test --skip-build --filter VigildSmokeTests
