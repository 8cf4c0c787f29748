#!/usr/bin/env bash
# run-in-guest.sh PROGRAM [ARGS...]
#
# Runs PROGRAM inside a QEMU guest booted on Debian 12's stock kernel, which has ESP (esp4/esp6, GCM): the kernel
# data plane's real test bed. The guest sees this host's root file system read-only (virtio-9p) under a tmpfs
# overlay, so host-built binaries (vigild, the test programs) and host packages (strongSwan, iproute2, nftables)
# run unchanged; /proc, /sys, /dev, /run and /tmp are fresh. The program runs as root in the current directory;
# its output (stdout and stderr, interleaved) is streamed to this script's stdout and its exit status is this
# script's.
#
# The kernel package is fetched once (`apt-get download`, unpacked with `dpkg-deb -x`, never installed) and the
# initramfs built once, in the cache folder (default .guest-cache/ at the repository root, git-ignored).
#
# Nothing is skipped silently: when the kernel cannot be fetched or the guest does not boot or does not report a
# status, this script exits 125 and says why (with the guest console's tail).
#
# Environment:
#   VIGIL_GUEST_CACHE           cache folder (default: <repo>/.guest-cache)
#   VIGIL_GUEST_KERNEL_PACKAGE  kernel package (default: what Debian's linux-image-amd64 depends on)
#   VIGIL_GUEST_MEMORY          guest memory in MiB (default 2048)
#   VIGIL_GUEST_CPUS            guest CPUs (default 2)
#   VIGIL_GUEST_TIMEOUT         seconds before the guest is killed (default 1200)
#   VIGIL_GUEST_RESULTS         a host folder the guest sees as /guest-out (default: a fresh temporary folder,
#                               removed afterwards); the program may leave result files there
#   VIGIL_GUEST_CONSOLE         1: also stream the guest console (kernel messages) to stderr
# Variables named VIGIL_* are passed to the program.
set -euo pipefail

readonly RUNNER_FAILED=125
die() {
  echo "run-in-guest: $*" >&2
  exit "$RUNNER_FAILED"
}

[ "$#" -ge 1 ] || die "usage: run-in-guest.sh PROGRAM [ARGS...]"
[ "$(id -u)" -eq 0 ] || die "must run as root (the guest exports / over 9p with the host's permissions)"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$repo/deploy/guest"
cache=${VIGIL_GUEST_CACHE:-$repo/.guest-cache}
memory=${VIGIL_GUEST_MEMORY:-2048}
cpus=${VIGIL_GUEST_CPUS:-2}
guest_timeout=${VIGIL_GUEST_TIMEOUT:-1200}

for tool in qemu-system-x86_64 busybox depmod modprobe dpkg-deb apt-get gzip flock timeout; do
  command -v "$tool" >/dev/null || die "$tool is missing (run deploy/install-deps.sh)"
done
busybox_path=$(command -v busybox)
if ! (ldd "$busybox_path" 2>&1 || true) | grep -q "not a dynamic"; then
  die "$busybox_path is not statically linked (install busybox-static)"
fi

# --- The kernel and the initramfs, prepared once --------------------------------------------------------------

# Modules the initramfs loads to reach the host's root: virtio PCI, 9p over virtio, overlayfs.
readonly EARLY_MODULES="virtio_pci 9pnet_virtio 9p overlay"

# Fetches and unpacks the kernel package (once: `kernel-ready` marks it done).
prepare_kernel() {
  [ -f "$cache/kernel-ready" ] && return
  rm -rf "$cache/kernel" "$cache/download" "$cache/initramfs-ready"
  mkdir -p "$cache/download"
  local package=${VIGIL_GUEST_KERNEL_PACKAGE:-}
  if [ -z "$package" ]; then
    kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
    package=$(kernel_package)
    if [ -z "$package" ]; then
      # A fresh machine may have no package lists yet (install-deps.sh updates them only when it installs).
      apt-get update -qq >"$cache/apt-update.log" 2>&1 || die "apt-get update failed: $(tail -5 "$cache/apt-update.log")"
      package=$(kernel_package)
    fi
    [ -n "$package" ] || die "cannot tell which kernel package linux-image-amd64 stands for (apt-cache knows none)"
  fi
  echo "run-in-guest: fetching $package (once; cached in $cache)" >&2
  (cd "$cache/download" && apt-get download -q "$package" >/dev/null 2>"$cache/download/apt.log") \
    || die "apt-get download $package failed: $(tail -5 "$cache/download/apt.log")"
  local deb
  deb=$(ls "$cache"/download/*.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || die "apt-get download $package left no .deb"
  dpkg-deb -x "$deb" "$cache/kernel" || die "dpkg-deb -x $deb failed"
  rm -rf "$cache/download"

  local version
  version=$(ls "$cache/kernel/lib/modules" | head -1)
  [ -n "$version" ] && [ -f "$cache/kernel/boot/vmlinuz-$version" ] || die "$package holds no kernel image"
  grep -q '^CONFIG_INET_ESP=[my]' "$cache/kernel/boot/config-$version" || die "$package's kernel has no ESP"
  depmod -b "$cache/kernel" "$version" || die "depmod failed for $version"
  echo "$version" >"$cache/kernel-version"
  touch "$cache/kernel-ready"
}

# Builds the initramfs: static busybox, the early modules in load order, and the init script (again whenever the
# init script changes).
prepare_initramfs() {
  local version
  version=$(cat "$cache/kernel-version")
  [ -f "$cache/initramfs-ready" ] && cmp -s "$here/guest-init.sh" "$cache/initramfs/init" && return
  local root="$cache/initramfs"
  rm -rf "$root" "$cache/initramfs.cpio.gz"
  mkdir -p "$root/bin" "$root/modules" "$root/proc" "$root/sys" "$root/dev" "$root/lower" "$root/rw" "$root/root"
  cp "$busybox_path" "$root/bin/busybox"
  local module
  for module in $EARLY_MODULES; do
    modprobe -d "$cache/kernel" -S "$version" --show-depends "$module" | awk '$1 == "insmod" { print $2 }'
  done | awk '!seen[$0]++' | while read -r path; do
    cp "$path" "$root/modules/"
    basename "$path" >>"$root/modules/order"
  done
  [ -s "$root/modules/order" ] || die "could not resolve the early modules ($EARLY_MODULES)"
  cp "$here/guest-init.sh" "$root/init"
  chmod 755 "$root/init"
  echo "$version" >"$root/kernel-version"
  echo "$cache" >"$root/cache-path"
  # The guest mounts a fresh /tmp; a repository under /tmp (a CI clone) is carried over it.
  echo "$repo" >"$root/repository-path"
  (cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 >"$cache/initramfs.cpio.gz") \
    || die "could not build the initramfs"
  touch "$cache/initramfs-ready"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
prepare_kernel
prepare_initramfs
exec 9>&-
version=$(cat "$cache/kernel-version")

# --- One run -----------------------------------------------------------------------------------------------------

keep_results=1
results=${VIGIL_GUEST_RESULTS:-}
if [ -z "$results" ]; then
  results=$(mktemp -d /tmp/vigil-guest-XXXXXX)
  keep_results=0
fi
mkdir -p "$results"
rm -f "$results/status" "$results/output" "$results/console.log" "$results/run.sh" "$results/boot-seconds"
: >"$results/output"

# What the guest runs: the setup, the current directory, VIGIL_* variables, then the program (each word quoted).
{
  echo "export PATH=$(printf '%q' "$PATH:/usr/local/sbin:/usr/sbin:/sbin") HOME=/root"
  echo "/bin/bash $(printf '%q' "$here/guest-setup.sh") || { echo 'run-in-guest: guest setup failed'; exit $RUNNER_FAILED; }"
  echo "cd $(printf '%q' "$PWD")"
  while IFS='=' read -r name _; do
    case "$name" in VIGIL_GUEST_*) ;; VIGIL_*) echo "export $name=$(printf '%q' "${!name}")" ;; esac
  done < <(env)
  printf 'exec'
  printf ' %q' "$@"
  echo
} >"$results/run.sh"

cleanup() {
  [ -n "${tail_pid:-}" ] && kill "$tail_pid" 2>/dev/null || true
  [ -n "${console_pid:-}" ] && kill "$console_pid" 2>/dev/null || true
  if [ "$keep_results" -eq 0 ]; then rm -rf "$results"; fi
  # An EXIT trap's last status would replace the script's own (a kept results folder made every run exit 1).
  return 0
}
trap cleanup EXIT

started=$(date +%s.%N)
timeout --signal=KILL "$guest_timeout" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$memory" \
  -kernel "$cache/kernel/boot/vmlinuz-$version" -initrd "$cache/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
  -display none -vga none -monitor none -nic none -no-reboot \
  -serial "file:$results/console.log" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$results,mount_tag=guestout,security_model=none" \
  </dev/null >"$results/qemu.log" 2>&1 &
qemu_pid=$!

tail -n +1 -f --pid="$qemu_pid" "$results/output" &
tail_pid=$!
if [ "${VIGIL_GUEST_CONSOLE:-0}" = 1 ]; then
  : >>"$results/console.log"
  tail -n +1 -f --pid="$qemu_pid" "$results/console.log" >&2 &
  console_pid=$!
fi

qemu_status=0
wait "$qemu_pid" || qemu_status=$?
wait "$tail_pid" 2>/dev/null || true
tail_pid=
elapsed=$(awk -v start="$started" -v end="$(date +%s.%N)" 'BEGIN { printf "%.1f", end - start }')

if [ ! -s "$results/status" ]; then
  reason="the guest reported no status (qemu exit $qemu_status"
  [ "$qemu_status" -eq 137 ] && reason="$reason: killed after ${guest_timeout}s"
  echo "run-in-guest: $reason); qemu said: $(tail -5 "$results/qemu.log" 2>/dev/null)" >&2
  echo "run-in-guest: guest console tail:" >&2
  tail -40 "$results/console.log" >&2 2>/dev/null || true
  exit "$RUNNER_FAILED"
fi
status=$(cat "$results/status")
boot=$(cat "$results/boot-seconds" 2>/dev/null || echo "?")
echo "run-in-guest: kernel $version, guest up after ${boot}s (uptime at program start), whole run ${elapsed}s, exit $status" >&2
case "$status" in
  ''|*[!0-9]*) die "the guest reported a malformed status: $status" ;;
esac
exit "$status"
