#!/bin/busybox sh
# PID 1 of the guest (copied into the initramfs by run-in-guest.sh). Loads the modules that reach the host's root,
# mounts it read-only over virtio-9p under a tmpfs overlay, mounts fresh /proc, /sys, /dev, /run and /tmp in it,
# switches root into it and runs /guest-out/run.sh there; the exit status goes to /guest-out/status, then the
# guest powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "guest-init: $*" >/dev/console
    [ -d /root/guest-out ] && echo "guest-init: $*" >>/root/guest-out/output
    sync
    reboot -f
}

version=$(cat /kernel-version)
cache=$(cat /cache-path)
for module in $(cat /modules/order); do
    insmod "/modules/$module" || fail "insmod $module failed"
done

mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower \
    || fail "cannot mount the host's root over 9p"
mount -t tmpfs -o mode=755 tmpfs /rw || fail "cannot mount the overlay's tmpfs"
mkdir -p /rw/upper /rw/overlay-scratch
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/overlay-scratch /root \
    || fail "cannot mount the overlay root"

mount -t proc proc /root/proc || fail "cannot mount /proc"
mount -t sysfs sysfs /root/sys || fail "cannot mount /sys"
mount -t devtmpfs devtmpfs /root/dev
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /root/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /root/dev/shm
# A fresh /tmp for the guest, but a repository that lives under /tmp (a CI clone) stays visible at its path.
repository=$(cat /repository-path)
case "$repository" in
    /tmp/*) mkdir -p /rw/repository && mount --bind "/root$repository" /rw/repository \
                || fail "cannot keep the repository $repository over the guest's /tmp" ;;
esac
mount -t tmpfs -o mode=1777 tmpfs /root/tmp
case "$repository" in
    /tmp/*) mkdir -p "/root$repository" && mount --move /rw/repository "/root$repository" \
                || fail "cannot put the repository back at $repository" ;;
esac
mount -t tmpfs -o mode=755 tmpfs /root/run
mkdir -p /root/guest-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 guestout /root/guest-out \
    || fail "cannot mount the results share"

# The guest kernel's modules, where the host's modprobe looks (the kernel's request_module runs /sbin/modprobe).
mkdir -p /root/lib/modules
rm -rf "/root/lib/modules/$version"
ln -s "$cache/kernel/lib/modules/$version" "/root/lib/modules/$version"

# PID 1 moves into the overlay root (switch_root), so the kernel's own helpers (request_module's modprobe) run
# there too, not in this initramfs. The second stage is a busybox script in /run, outside both roots' files.
mkdir -p /root/run/vigil-guest
cp /bin/busybox /root/run/vigil-guest/busybox
cat >/root/run/vigil-guest/init <<'STAGE2'
#!/run/vigil-guest/busybox sh
/bin/bash /guest-out/run.sh >>/guest-out/output 2>&1 </dev/null
echo $? >/guest-out/status
/run/vigil-guest/busybox sync
/run/vigil-guest/busybox umount /guest-out
/run/vigil-guest/busybox reboot -f
STAGE2
chmod 755 /root/run/vigil-guest/init
awk '{ print $1 }' /proc/uptime >/root/guest-out/boot-seconds
exec switch_root /root /run/vigil-guest/init
