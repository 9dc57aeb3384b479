#!/usr/bin/python
# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: usbip_bind
short_description: Export a local USB device through usbip-host (USB/IP server side)
version_added: "0.1.0"
description:
  - Binds a USB device of the target to the C(usbip-host) driver, so that a USB/IP server (C(usbipd)) can offer it
    to clients, or returns it to its usual driver.
  - The device is chosen by O(busid) or, because bus IDs change with module load order and replug, by a O(match)
    on its stable identity. A match that finds no device, or more than one, fails and lists the candidates.
  - Hubs and devices that are themselves attached through C(vhci_hcd) are refused (exporting an imported device
    would deadlock the USB stack).
  - Idempotent. In check mode nothing is written; the planned sysfs writes are returned in RV(sysfs_changes).
    C(usbip-host), when it would be loaded, is looked up with C(modprobe -n), so that a kernel without it fails
    check mode as it fails the real run.
  - The diff shows the device's driver binding and usbip status before and after.
  - Needs the C(usbip-host) kernel module.
extends_documentation_fragment:
  - usbip.usbip._attributes  # first: of two fragments, the first one's attribute fields win
  - ansible.builtin.action_common_attributes
  - usbip.usbip.kernel_modules
options:
  busid:
    description:
      - Bus ID of the device, as in C(/sys/bus/usb/devices), for example C(1-1.4).
      - Mutually exclusive with O(match).
    type: str
  match:
    description:
      - Select the device by identity instead of bus ID; every criterion given must hold.
      - Devices attached through C(vhci_hcd) and hubs are never candidates.
      - Mutually exclusive with O(busid).
    type: dict
    suboptions:
      vendor:
        description:
          - Vendor ID, as four hex digits (V('0403'), V('0x0403')) or as an integer.
          - Quote hex IDs in YAML; an unquoted V(1209) is the decimal integer 1209.
        type: raw
      product:
        description: Product ID, in the same forms as O(match.vendor).
        type: raw
      serial:
        description: The device's serial number string, exactly.
        type: str
      port_path:
        description:
          - Physical port, as V(<controller>-<devpath>) (V(0000:00:14.0-1.4), V(dummy_hcd.0-1)) or a bare devpath
            (V(1.4)) that matches that port on any controller.
          - RV(device.port_path) shows the value of a device.
        type: str
  state:
    description:
      - V(present) binds the device to C(usbip-host) so that it can be exported.
      - V(absent) unbinds it, and the kernel gives it back to its usual driver. A device that is not present (no
        such O(busid), or no device fits O(match)) is not bound either, so the task is ok, without change, and says
        so in RV(msg).
    type: str
    choices: [present, absent]
    default: present
notes:
  - The server still has to run C(usbipd) to offer the device to clients.
seealso:
  - module: usbip.usbip.usbip_attach
  - module: usbip.usbip.usbip_info
"""

EXAMPLES = r"""
- name: Export the FTDI adapter with serial A1B2, wherever it is plugged in
  usbip.usbip.usbip_bind:
    match:
      vendor: "0403"
      product: "6001"
      serial: A1B2
  become: true

- name: Export the device on the first port of the front hub
  usbip.usbip.usbip_bind:
    match:
      port_path: 0000:00:14.0-1.4
  become: true

- name: Give 1-1.4 back to its usual driver (ok, unchanged, when 1-1.4 is not plugged in)
  usbip.usbip.usbip_bind:
    busid: 1-1.4
    state: absent
  become: true
"""

RETURN = r"""
device:
  description:
    - The device after the task (in check mode, as found before it).
    - Null with O(state=absent) when the device is not present.
  returned: success
  type: dict
  contains:
    busid:
      description: Bus ID.
      type: str
      sample: 1-1.4
    id_vendor:
      description: Vendor ID, four hex digits.
      type: str
      sample: "0403"
    id_product:
      description: Product ID, four hex digits.
      type: str
      sample: "6001"
    usbid:
      description: C(vendor:product).
      type: str
      sample: "0403:6001"
    vendor_name:
      description: Vendor name from the USB ID database, if known.
      type: str
      sample: Future Technology Devices International, Ltd
    product_name:
      description: Product name from the USB ID database, if known.
      type: str
      sample: FT232 Serial (UART) IC
    manufacturer:
      description: The device's manufacturer string.
      type: str
    product:
      description: The device's product string.
      type: str
    serial:
      description: The device's serial number string.
      type: str
      sample: A1B2
    driver:
      description: The driver bound to the device.
      type: str
      sample: usbip-host
    bound:
      description: Whether the device is bound to C(usbip-host).
      type: bool
    usbip_status:
      description: C(available), C(used) (exported to a client) or C(error); null when not bound.
      type: str
      sample: available
    port_path:
      description: Physical port path, usable in O(match.port_path).
      type: str
      sample: 0000:00:14.0-1.4
    devpath:
      description: Hub port chain below the root hub.
      type: str
    speed:
      description: Speed, as the C tools word it.
      type: str
      sample: High Speed(480Mbps)
    device_class:
      description: bDeviceClass, two hex digits.
      type: str
    is_hub:
      description: Whether the device is a hub.
      type: bool
    under_vhci:
      description: Whether the device is itself attached through vhci_hcd.
      type: bool
    exportable:
      description: Whether the device may be exported at all.
      type: bool
previous_driver:
  description: The driver the device had before the task; null when it had none or is not present.
  returned: success
  type: str
  sample: usb
msg:
  description: With O(state=absent), why nothing was to do when the device is not present.
  returned: O(state=absent) and the device not present
  type: str
  sample: device 1-1.4 is not present; nothing to unbind
sysfs_changes:
  description: The sysfs writes made, or in check mode the ones that would be made, in order.
  returned: always
  type: list
  elements: dict
  sample: [{"op": "write", "path": "/sys/bus/usb/drivers/usbip-host/bind", "value": "1-1.4"}]
kernel_modules:
  description: Kernel modules loaded by the task (in check mode, that would be loaded).
  returned: always
  type: list
  elements: str
  sample: [usbip-host]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_args import KERNEL_MODULES_ARGS, match_args
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_module import diff, run
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_results import local_device_info, status_name
from ansible_collections.usbip.usbip.plugins.module_utils.usbip import matching, validate
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.device import DeviceStatus
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.errors import DeviceNotFound
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.host import DRIVER_NAME, KERNEL_MODULE, HostDriver


def binding(device, status):
    """The state this module manages, for the diff."""
    return {
        "driver": device.driver,
        "usbip_host": device.driver == DRIVER_NAME,
        "usbip_status": status_name(status),
    }


def not_present(ctx, busid, match):
    """``state=absent`` for a device that is not there: nothing is bound, so nothing is to do."""
    what = "device %s is not present" % busid if busid is not None else "no device on this host matches %s" % match
    result = {"changed": False, "msg": what + "; nothing to unbind", "device": None, "previous_driver": None}
    if ctx.diff_mode:
        result["diff"] = diff("(not present)\n", "(not present)\n",
                              "usb device %s" % (busid if busid is not None else match))
    return result


def converge(ctx):
    params = ctx.module.params
    state = params["state"]
    # Validate everything before any sysfs access.
    busid = validate.usb_busid(params["busid"]) if params["busid"] is not None else None
    match = matching.Match.checked(**params["match"]) if params["match"] is not None else None

    host = HostDriver(ctx.sysfs)
    try:
        if busid is not None:
            device = host.bus.describe(busid)
        else:
            device = matching.select_local(host.bindable(), match)
    except DeviceNotFound:  # NoMatch too; an ambiguous match still fails
        if state == "present":
            raise
        return not_present(ctx, busid, match)
    busid = device.busid
    before_status = host.status(busid) if device.driver == DRIVER_NAME else None
    before = binding(device, before_status)

    if state == "present":
        # In check mode a usbip-host that would be loaded reads as loaded: bind() plans its writes.
        ctx.load_kernel_modules([KERNEL_MODULE])
        changed = host.bind(busid).changed
    else:
        changed = host.unbind(busid).changed

    if ctx.check_mode:
        # Nothing was written, so nothing can be read back: the state the planned writes lead to.
        after_device = device
        if changed:
            after = {"driver": DRIVER_NAME, "usbip_host": True, "usbip_status": "available"} \
                if state == "present" else {"driver": "(its usual driver, probed by the kernel)",
                                            "usbip_host": False, "usbip_status": None}
        else:
            after = before
        after_status = before_status
    else:
        after_device = host.bus.describe(busid) if changed else device
        after_status = host.status(busid) if after_device.driver == DRIVER_NAME else None
        after = binding(after_device, after_status)
        if state == "present" and after_status not in (DeviceStatus.AVAILABLE, DeviceStatus.USED):
            ctx.fail_msg("device %s is bound to usbip-host but reports status %s" % (
                busid, status_name(after_status)), hint="unbind and bind it again; see dmesg")

    header = "usb device %s (%s%s)" % (busid, device.device.usbid,
                                       " serial=%s" % device.serial if device.serial else "")
    result = {
        "changed": changed,
        "device": local_device_info(after_device, after_status),
        "previous_driver": device.driver,
    }
    if ctx.diff_mode:
        result["diff"] = diff(before, after, header)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            busid=dict(type="str"),
            match=match_args("vendor", "product", "serial", "port_path"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            **KERNEL_MODULES_ARGS,
        ),
        mutually_exclusive=[("busid", "match")],
        required_one_of=[("busid", "match")],
        supports_check_mode=True,
    )
    run(module, converge)


if __name__ == "__main__":
    main()
