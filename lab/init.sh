#!/bin/sh
# /init of the lab's initramfs. It turns the host's root file system (shared
# read-only over virtio-9p) into the guest's root, with throw-away tmpfs
# overlays where programs expect to write, runs the job the host left in the
# rw "xfer" share, and hands the job's exit status back to QEMU.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod "/mods/$m" || echo "lab-init: insmod $m failed"; done

fail() { echo "lab-init: $*"; echo "LAB-EXIT rc=125"; exit_qemu 125; }
# isa-debug-exit at 0xf4: QEMU exits at once with (value << 1) | 1. A plain
# poweroff can hang behind a wedged USB device; this cannot.
exit_qemu() { printf "\\$(printf %o $(($1 & 127)))" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null; poweroff -f; }

R=/newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot $R || fail "9p root mount failed"
mount -t tmpfs -o mode=0755 tmpfs $R/run
mkdir -p /ovl && mount -t tmpfs tmpfs /ovl
for d in etc var root tmp; do
  mkdir -p /ovl/$d/u /ovl/$d/w
  mount -t overlay overlay -o lowerdir=$R/$d,upperdir=/ovl/$d/u,workdir=/ovl/$d/w $R/$d || fail "overlay on /$d failed"
done
chmod 1777 $R/tmp
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mkdir -p $R/tmp/xfer
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 xfer $R/tmp/xfer || fail "9p xfer mount failed"
# the host's machine-id and hostname stay the host's; give the guest its own name
echo lab > /proc/sys/kernel/hostname
echo 1 > /proc/sys/kernel/printk

echo "LAB-READY uptime=$(cut -d' ' -f1 /proc/uptime)"
chroot $R /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/sh -c 'ip link set lo up 2>/dev/null; cd /tmp; exec /bin/sh /tmp/xfer/job.sh' </dev/console >/dev/console 2>&1
rc=$?
sync
echo "LAB-EXIT rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
exit_qemu $rc
