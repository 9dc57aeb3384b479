set -x
for m in configfs usbip-core usbip-host vhci-hcd dummy_hcd libcomposite usb_f_mass_storage usb_f_acm usb-storage sd_mod; do modprobe $m; done
modprobe usbip-vudc num=2
mount -t configfs none /sys/kernel/config
dd if=/dev/zero of=/tmp/ms.img bs=1M count=4 status=none
mk() { g=/sys/kernel/config/usb_gadget/$1; mkdir -p $g/strings/0x409 $g/configs/c.1/strings/0x409 $g/functions/$5
  echo $2 > $g/idVendor; echo $3 > $g/idProduct; echo 0x0200 > $g/bcdUSB
  echo "SER-$1" > $g/strings/0x409/serialnumber; echo vmlab > $g/strings/0x409/manufacturer; echo "gadget-$1" > $g/strings/0x409/product
  echo cfg > $g/configs/c.1/strings/0x409/configuration
  case $5 in mass_storage.*) echo /tmp/ms.img > $g/functions/$5/lun.0/file;; esac
  ln -s $g/functions/$5 $g/configs/c.1/; echo $4 > $g/UDC; }
mk gvudc 0x1d6b 0x0104 usbip-vudc.0 mass_storage.0
mk gdummy 0x1209 0x0001 dummy_udc.0 acm.0
sleep 2
D=$(for d in /sys/bus/usb/devices/*; do [ "$(cat $d/idVendor 2>/dev/null)" = 1209 ] && basename $d; done)
echo "dummy busid=$D"
O=/tmp/xfer
PY=/work/main/.venv/bin/python
$PY lab/capture_sysfs.py $O/01-loaded.json /sys/devices/platform/vhci_hcd.0 /sys/devices/platform/usbip-vudc.0 /sys/devices/platform/usbip-vudc.1 /sys/bus/usb/drivers/usbip-host /sys/bus/usb/devices /sys/devices/platform/dummy_hcd.0 /sys/class/udc /sys/kernel/config/usb_gadget /sys/bus/platform/drivers/usbip-vudc /sys/bus/usb/drivers
usbip bind -b $D
usbipd -D --pid=/tmp/h.pid
usbipd -D --device -t 3241 --pid=/tmp/d.pid
sleep 1
usbip attach -r 127.0.0.1 -b $D
usbip -t 3241 attach -r 127.0.0.1 -d usbip-vudc.0
sleep 3
usbip port
ls -la /var/run/vhci_hcd/; cat /var/run/vhci_hcd/*
$PY lab/capture_sysfs.py $O/02-attached.json /sys/devices/platform/vhci_hcd.0 /sys/devices/platform/usbip-vudc.0 /sys/bus/usb/drivers/usbip-host /sys/bus/usb/devices /sys/devices/platform/dummy_hcd.0 /var/run/vhci_hcd /sys/class/udc
