# The emulated USB hardware (lab/usbhw.py) on the guest's xHCI controller: run with
#   python3 -m lab --usb run -- "$(cat tests/unit/sysfs/data/capture-hardware-job.sh)"
set -x
for m in usbip-core usbip-host vhci-hcd xhci-pci ehci-pci usb-storage sd_mod ftdi_sio usbhid; do modprobe $m; done
sleep 3
ser() { for d in /sys/bus/usb/devices/*; do [ "$(cat $d/serial 2>/dev/null)" = "$1" ] && basename $d; done; }
DISK=$(ser LABDISK1); HUB=${DISK%.*}; XHCI=$(readlink -f /sys/bus/usb/devices/$HUB/..)
echo "hub=$HUB disk=$DISK controller=$XHCI"
O=/tmp/xfer
PY=/work/main/.venv/bin/python
$PY lab/capture_sysfs.py $O/03-hardware.json $XHCI /sys/bus/usb/drivers/usbip-host /sys/bus/usb/drivers/usb-storage /sys/devices/platform/vhci_hcd.0
usbip bind -b $DISK
$PY lab/capture_sysfs.py $O/04-hardware-bound.json $XHCI/$HUB /sys/bus/usb/drivers/usbip-host /sys/bus/usb/drivers/usb-storage
usbip unbind -b $DISK
sleep 2
$PY lab/capture_sysfs.py $O/05-hardware-unbound.json $XHCI/$HUB /sys/bus/usb/drivers/usbip-host /sys/bus/usb/drivers/usb-storage
# An attach with a socket that is not connected: vhci accepts the write and lets the port go at once.
$PY -c "
import socket, errno
s = socket.socket()
try:
    open('/sys/devices/platform/vhci_hcd.0/attach', 'w').write('0 %d 65538 2' % s.fileno())
    print('attach accepted')
except OSError as e:
    print('attach refused:', errno.errorcode[e.errno])
"
$PY lab/capture_sysfs.py $O/06-vhci-unconnected.json /sys/devices/platform/vhci_hcd.0
ls -la $O
