#!/bin/sh
# /init of the lab's initramfs. It turns the host's root file system (shared
# read-only over virtio-9p) into the guest's root, with overlays where
# programs expect to write, and then either
#   - runs the job the host left in the rw "xfer" share and hands its exit
#     status back to QEMU (the default), or
#   - with lab.systemd=1 on the kernel command line, boots systemd on that
#     root, which runs the job as lab-job.service (fleet guests, roles).
# lab.disk=1: the overlays' upper layers live on /dev/vda (ext4) and survive
# a reboot of the guest; otherwise they are tmpfs and vanish with it.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod "/mods/$m" 2>/dev/null || echo "lab-init: insmod $m failed"; done

arg() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
# isa-debug-exit at 0xf4: QEMU exits at once with (value << 1) | 1. A plain
# poweroff can hang behind a wedged USB device; this cannot.
exit_qemu() { printf "\\$(printf %o $(($1 & 127)))" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null; poweroff -f; }
fail() { echo "lab-init: $*"; echo "LAB-EXIT rc=125"; exit_qemu 125; }

R=/newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot $R || fail "9p root mount failed"
mkdir -p /ovl
if [ "$(arg lab.disk)" = 1 ]; then
  mount -t ext4 /dev/vda /ovl || fail "cannot mount the persistent disk /dev/vda"
else
  mount -t tmpfs tmpfs /ovl
fi
mount -t tmpfs -o mode=0755 tmpfs $R/run
for d in etc var root usr/local tmp; do
  key=$(echo $d | tr / _)
  mkdir -p /ovl/$key/u /ovl/$key/w
  mount -t overlay overlay -o lowerdir=$R/$d,upperdir=/ovl/$key/u,workdir=/ovl/$key/w $R/$d \
    || fail "overlay on /$d failed"
done
chmod 1777 $R/tmp
mkdir -p $R/tmp/xfer
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 xfer $R/tmp/xfer || fail "9p xfer mount failed"
name=$(arg lab.hostname); name=${name:-lab}
echo $name > $R/etc/hostname
echo "127.0.1.1 $name" >> $R/etc/hosts
echo 1 > /proc/sys/kernel/printk

if [ "$(arg lab.systemd)" = 1 ]; then
  # The host's fstab and enabled services are not the guest's, and boot-time
  # cleaning of /tmp must not reach through /tmp/xfer into the host's files.
  : > $R/etc/fstab
  mkdir -p $R/etc/tmpfiles.d
  : > $R/etc/tmpfiles.d/tmp.conf
  [ -s /ovl/etc/u/machine-id ] || cat /proc/sys/kernel/random/uuid | tr -d - > $R/etc/machine-id
  S=$R/etc/systemd/system
  for unit in postgresql.service e2scrub_reap.service systemd-timesyncd.service systemd-pstore.service \
      apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer man-db.timer \
      getty@tty1.service serial-getty@ttyS0.service systemd-networkd.service systemd-resolved.service \
      remote-fs.target; do
    ln -sf /dev/null $S/$unit
  done
  mkdir -p $R/etc/lab $S/multi-user.target.wants
  cat > $R/etc/lab/run-job <<'JOB'
#!/bin/sh
/bin/sh /tmp/xfer/job-$(hostname).sh
rc=$?
echo "LAB-EXIT rc=$rc"
sync
printf "\\$(printf %o $((rc & 127)))" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
JOB
  chmod +x $R/etc/lab/run-job
  cat > $S/lab-job.service <<'UNIT'
[Unit]
Description=lab job from the host
After=multi-user.target
[Service]
Type=simple
ExecStart=/etc/lab/run-job
StandardOutput=journal+console
StandardError=journal+console
UNIT
  ln -sf ../lab-job.service $S/multi-user.target.wants/lab-job.service
  echo "LAB-READY systemd uptime=$(cut -d' ' -f1 /proc/uptime)"
  mount -t devtmpfs dev $R/dev
  exec switch_root -c /dev/console $R /lib/systemd/systemd
fi

mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
echo $name > /proc/sys/kernel/hostname
# The kernel loads modules on demand (crypto algorithms, TCP ULPs, ...) by running this helper in the
# initramfs's root, not in the chroot below, where modprobe and /lib/modules are: step into it first.
printf '#!/bin/sh\nexec chroot %s /sbin/modprobe "$@"\n' $R > /bin/lab-modprobe
chmod 755 /bin/lab-modprobe
echo /bin/lab-modprobe > /proc/sys/kernel/modprobe

echo "LAB-READY uptime=$(cut -d' ' -f1 /proc/uptime)"
chroot $R /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/sh -c "ip link set lo up 2>/dev/null; cd /tmp; exec /bin/sh /tmp/xfer/job-$name.sh" </dev/console >/dev/console 2>&1
rc=$?
sync
echo "LAB-EXIT rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
exit_qemu $rc
