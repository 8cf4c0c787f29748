#!/usr/bin/env bash
# Installs the Debian packages Vigil builds and tests with. Idempotent: installs only what is missing.
set -euo pipefail

packages=(
  # build
  pkg-config libssl-dev libnl-3-dev libnl-route-3-dev libnl-xfrm-3-dev
  # lab and kernel tests
  iproute2 nftables iputils-ping procps psmisc iperf3 tcpdump util-linux python3
  # packaging: the Debian package, its clean-root test, the systemd unit's checks
  debootstrap systemd binutils
  # reference IKE peer
  strongswan-charon strongswan-swanctl libcharon-extra-plugins
  # openssl (ECP groups, GCM) and curve25519 plugins for the interop proposals
  libstrongswan-standard-plugins libstrongswan-extra-plugins
  # kernel-ESP tests: a QEMU guest on Debian's stock kernel (deploy/guest/run-in-guest.sh), a static busybox for
  # its initramfs, kmod for its modules, tcpdump to watch its WAN link
  qemu-system-x86 busybox-static kmod tcpdump
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts charon-systemd / strongswan-starter where systemd runs; Vigil's tests start their own
# charons in namespaces, so make sure no system instance holds the IKE ports.
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl disable --now strongswan-starter strongswan 2>/dev/null || true
fi
echo "install-deps: done"
