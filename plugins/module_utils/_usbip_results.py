# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Devices and states as the usbip modules return them.

Private to this collection (the leading underscore): other collections and
local modules must not import it; it changes without notice. The keys made
here are the modules' public return values: ``docs/results.md`` lists them
and says which vocabulary a new key takes.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible_collections.usbip.usbip.plugins.module_utils.usbip.device import DeviceStatus, UsbDevice
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.matching import port_path, remote_port_path
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs import host, names
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.usb import LocalDevice


def status_name(status: Optional[DeviceStatus]) -> Optional[str]:
    return None if status is None else status.name.lower()


def hex4(value: Optional[int]) -> Optional[str]:
    return None if value is None else "%04x" % value


def _identity(busid: str, d: UsbDevice) -> Dict[str, Any]:
    """The keys every device result starts with: where it is and what it is."""
    ids = names.default()
    return {
        "busid": busid,
        "id_vendor": hex4(d.id_vendor),
        "id_product": hex4(d.id_product),
        "usbid": d.usbid,
        "vendor_name": ids.vendor(d.id_vendor),
        "product_name": ids.product(d.id_vendor, d.id_product),
    }


def local_device_info(dev: LocalDevice, status: Optional[DeviceStatus] = None) -> Dict[str, Any]:
    """A local device as modules return it."""
    d = dev.device
    return dict(
        _identity(dev.busid, d),
        manufacturer=dev.manufacturer,
        product=dev.product,
        serial=dev.serial,
        driver=dev.driver,
        bound=dev.driver == host.DRIVER_NAME,
        usbip_status=status_name(status),
        port_path=port_path(dev),
        devpath=dev.devpath,
        speed=d.speed.description,
        device_class="%02x" % d.device_class,
        is_hub=dev.is_hub,
        under_vhci=dev.under_vhci,
        exportable=dev.bindable,
    )


def remote_device_info(d: UsbDevice) -> Dict[str, Any]:
    """A device from a server's list (or an import reply)."""
    return dict(
        _identity(d.busid, d),
        speed=d.speed.description,
        device_class="%02x" % d.device_class,
        num_interfaces=d.num_interfaces,
        interfaces=["%02x/%02x/%02x" % (i.interface_class, i.interface_subclass, i.interface_protocol)
                    for i in d.interfaces],
        path=d.path,
        # What a match's port_path compares, computed from the path as the server computes its own (None: a gadget).
        port_path=remote_port_path(d),
    )
