#!/bin/bash
# Runs in the guest (host root, fresh /proc /sys /dev /run /tmp) before the program: loopback, the modules the
# kernel data plane and the lab need, the directories charon and `ip netns` expect. Fails loudly.
set -euo pipefail

# ESP and XFRM, TUN, veth and bridges for the lab's namespaces, nftables for captures and cuts: without these the
# tests cannot run. Everything else (crypto algorithms, nftables expressions) the kernel loads on demand:
# request_module runs the host's modprobe, which finds the guest kernel's modules through the link guest-init made.
# (Loading the crypto drivers up front costs seconds: their self-tests run on the emulated CPU.)
required=(xfrm_user esp4 esp6 xfrm4_tunnel tun veth bridge nf_tables af_packet)
if ! out=$(modprobe -a "${required[@]}" 2>&1); then
  echo "guest-setup: modprobe ${required[*]}: $out" >&2
  exit 1
fi

ip link set lo up
mkdir -p /run/netns /run/lock /var/tmp
hostname vigil-guest 2>/dev/null || true
[ -e /dev/net/tun ] || { echo "guest-setup: /dev/net/tun is missing" >&2; exit 1; }
