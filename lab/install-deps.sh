#!/bin/sh
# Install what the lab needs on a Debian 12 host, as root. Idempotent: does
# nothing when everything is already there, so `make test` can always call it.
#   qemu-system-x86   runs the guest (TCG; KVM is not required)
#   linux-image-amd64 Debian's stock kernel with the usbip and gadget modules
#   busybox-static    the initramfs userland
#   usbip             Debian's C tools: the interoperability peer in tests only
#   hwdata            usb.ids, for vendor/product names
#   openssh-server, python3-yaml, python3-pyudev: what fleet guests (systemd on
#   the shared, read-only /usr) need to be reached and managed by Ansible
#   openssl, tcpdump  certificates for the TLS tests, and the capture that shows
#                     no plaintext crosses a TLS attachment
#   nftables          the server role's firewall option, proven in the fleet
set -eu
PKGS="qemu-system-x86 linux-image-amd64 busybox-static usbip hwdata kmod cpio xz-utils zstd iproute2 udev
  openssh-server openssh-client e2fsprogs python3-yaml python3-pyudev openssl tcpdump nftables"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "lab: host packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "lab: missing packages:$missing (run as root, or: sudo $0)" >&2
  exit 1
fi
echo "lab: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
