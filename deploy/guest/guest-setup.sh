#!/bin/bash
# Runs in the guest (host root, fresh /proc /sys /dev /run /tmp) before the program: loopback, the modules the
# kernel data plane and the lab need, the directories charon and `ip netns` expect. Fails loudly.
set -euo pipefail

# ESP and XFRM, TUN, veth and bridges for the lab's namespaces, nftables for captures and cuts: without these the
# tests cannot run. Everything else (crypto algorithms, nftables expressions) the kernel loads on demand:
# request_module runs the host's modprobe, which finds the guest kernel's modules through the link guest-init made.
required=(xfrm_user esp4 esp6 xfrm4_tunnel tun veth bridge nf_tables af_packet)
if ! out=$(modprobe -a "${required[@]}" 2>&1); then
  echo "guest-setup: modprobe ${required[*]}: $out" >&2
  exit 1
fi

ip link set lo up

# The ESP transforms the lab negotiates are instantiated once here, by adding and deleting an SA of each: the first
# SA of a transform loads its modules and runs the kernel's crypto self-tests, seconds on the emulated CPU. Left to
# the first case, that lands inside charon's IKE_AUTH (it installs its SAs before answering), and the answer comes
# after vigild's retransmissions have run out.
warm_start=$(date +%s.%N)
warm() {
  local spi=$1; shift
  ip xfrm state add src 192.0.2.254 dst 192.0.2.253 proto esp spi "$spi" mode tunnel "$@" ||
    { echo "guest-setup: cannot instantiate ESP transform: $*" >&2; exit 1; }
  ip xfrm state delete src 192.0.2.254 dst 192.0.2.253 proto esp spi "$spi"
}
warm 0x00000101 aead 'rfc4106(gcm(aes))' 0x$(printf '%072d' 0) 128
warm 0x00000102 enc 'cbc(aes)' 0x$(printf '%064d' 0) auth-trunc 'hmac(sha256)' 0x$(printf '%064d' 0) 128
echo "guest-setup: ESP transforms instantiated in $(awk -v start="$warm_start" -v end="$(date +%s.%N)" 'BEGIN { printf "%.1f", end - start }') s"
mkdir -p /run/netns /run/lock /var/tmp
hostname vigil-guest 2>/dev/null || true
[ -e /dev/net/tun ] || { echo "guest-setup: /dev/net/tun is missing" >&2; exit 1; }
