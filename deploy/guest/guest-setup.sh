#!/bin/bash
# Runs in the guest (host root, fresh /proc /sys /dev /run /tmp) before the program: loopback, the modules the
# kernel data plane and the lab need, the directories charon and `ip netns` expect. Fails loudly.
set -euo pipefail

# ESP and XFRM, TUN, veth and bridges for the lab's namespaces, nftables for captures and cuts: without these the
# tests cannot run. The crypto algorithms are loaded up front so a first SA add does not wait for request_module;
# the kernel loads anything else on demand (request_module runs the host's modprobe, which finds the guest
# kernel's modules through the link guest-init made).
required=(xfrm_user esp4 esp6 xfrm4_tunnel tun veth bridge nf_tables af_packet)
optional=(xfrm6_tunnel xfrm_ipcomp aesni_intel gcm ghash_generic cbc sha256_generic sha512_generic hmac authenc
          echainiv seqiv ccm ctr chacha20poly1305 nft_ct nft_chain_nat)
if ! out=$(modprobe -a "${required[@]}" 2>&1); then
  echo "guest-setup: modprobe ${required[*]}: $out" >&2
  exit 1
fi
modprobe -a -q "${optional[@]}" 2>/dev/null || true

ip link set lo up
mkdir -p /run/netns /run/lock /var/tmp
hostname vigil-guest 2>/dev/null || true
[ -e /dev/net/tun ] || { echo "guest-setup: /dev/net/tun is missing" >&2; exit 1; }
