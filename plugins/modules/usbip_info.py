#!/usr/bin/python
# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: usbip_info
short_description: USB/IP facts of a host - local devices, exports, gadgets, attached devices, a server's list
version_added: "0.1.0"
description:
  - Reads, and never changes, the USB/IP state of the target.
  - Local USB devices with their export state (bound to C(usbip-host), usbip status), C(usbip-vudc) instances and
    the gadgets bound to them, configfs gadgets, the C(vhci_hcd) ports in use with the remote device of each, and
    optionally the device list of a USB/IP server.
  - A driver that is not loaded is reported in RV(drivers) and its lists are empty; nothing is loaded.
author:
  - usbip.usbip contributors (@usbip)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: N/A
    details: Nothing is changed.
  platform:
    support: full
    platforms: posix
    details: Linux.
options:
  gather:
    description: What to read. The server's list is read only when O(server) is given.
    type: list
    elements: str
    choices: [devices, vudc, gadgets, ports]
    default: [devices, vudc, gadgets, ports]
  server:
    description: A USB/IP server whose available devices to list in RV(remote_devices).
    type: str
  port:
    description: TCP port of O(server).
    type: int
    default: 3240
  timeout:
    description: Bound on connecting to O(server) and on its answer, in seconds.
    type: int
    default: 10
seealso:
  - module: usbip.usbip.usbip_bind
  - module: usbip.usbip.usbip_attach
  - module: usbip.usbip.usbip_vudc
"""

EXAMPLES = r"""
- name: What does this server export?
  usbip.usbip.usbip_info:
    gather: [devices]
  register: usb

- name: Bus IDs of the exported devices
  ansible.builtin.debug:
    msg: "{{ usb.devices | selectattr('bound') | map(attribute='busid') | list }}"

- name: What does lab-server offer, and what is attached here?
  usbip.usbip.usbip_info:
    gather: [ports]
    server: lab-server.example.com
  register: usbip
"""

RETURN = r"""
drivers:
  description: Which kernel interfaces are available.
  returned: always
  type: dict
  contains:
    usbip_host:
      description: The C(usbip-host) driver is loaded.
      type: bool
    vhci_hcd:
      description: The C(vhci_hcd) controllers exist.
      type: bool
    usbip_vudc:
      description: The C(usbip-vudc) driver is loaded.
      type: bool
    gadget_configfs:
      description: Configfs USB gadgets are available (configfs mounted, C(libcomposite) loaded).
      type: bool
devices:
  description: Local USB devices (root hubs excluded), as M(usbip.usbip.usbip_bind) returns a device.
  returned: when V(devices) is gathered
  type: list
  elements: dict
exported:
  description: Bus IDs of the devices bound to C(usbip-host).
  returned: when V(devices) is gathered
  type: list
  elements: str
  sample: ["1-1.4"]
vudc:
  description: C(usbip-vudc) instances.
  returned: when V(vudc) is gathered
  type: list
  elements: dict
  contains:
    busid:
      description: Instance name, the bus ID clients attach.
      type: str
      sample: usbip-vudc.0
    gadget:
      description: Name of the gadget bound to the instance, if any.
      type: str
    exportable:
      description: Whether a gadget is bound, so that C(usbipd --device) offers the instance.
      type: bool
    usbip_status:
      description: C(available), C(used) or C(error).
      type: str
    usbid:
      description: C(vendor:product) of the bound gadget.
      type: str
gadgets:
  description: Configfs gadgets with their UDC.
  returned: when V(gadgets) is gathered
  type: list
  elements: dict
  sample: [{"name": "stick", "udc": "usbip-vudc.0", "idVendor": "0x1d6b", "idProduct": "0x0104",
            "functions": ["mass_storage.0"]}]
ports:
  description: vhci ports in use, with where each device comes from and the local device it became.
  returned: when V(ports) is gathered
  type: list
  elements: dict
  sample: [{"port": 0, "hub": "hs", "status": "used", "local_busid": "3-1", "host": "10.0.0.5",
            "remote_port": 3240, "remote_busid": "1-1.4", "device": {}}]
remote_devices:
  description: The available devices of O(server).
  returned: when O(server) is given
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_module import Context
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_results import (
    hex4,
    local_device_info,
    remote_device_info,
    status_name,
)
from ansible_collections.usbip.usbip.plugins.module_utils.usbip import attachments, validate
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.net import client
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.gadget import GADGETS, GadgetDriver
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.host import DRIVER as HOST_DRIVER
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.host import DRIVER_NAME, HostDriver
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.usb import UsbBus
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.vhci import VHCI, VhciDriver
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.vudc import DRIVER as VUDC_DRIVER
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.vudc import UDC_CLASS, VudcDriver


def devices(sysfs):
    host = HostDriver(sysfs)
    found = []
    for dev in host.bus.devices():
        status = host.status(dev.busid) if dev.driver == DRIVER_NAME else None
        found.append(local_device_info(dev, status))
    return found


def vudc_instances(sysfs):
    vudc = VudcDriver(sysfs)
    found = []
    for name in vudc.instances():
        entry = {"busid": name, "gadget": sysfs.read_optional("%s/%s/function" % (UDC_CLASS, name)) or None,
                 "exportable": False, "usbip_status": status_name(vudc.status(name)), "usbid": None,
                 "id_vendor": None, "id_product": None}
        if vudc.has_gadget(name):
            device = vudc.describe(name)
            entry.update(exportable=True, usbid=device.usbid, id_vendor=hex4(device.id_vendor),
                         id_product=hex4(device.id_product), speed=device.speed.description)
        found.append(entry)
    return found


def gadgets(sysfs):
    g = GadgetDriver(sysfs)
    found = []
    for name in g.names():
        spec = g.read(name)
        if spec is None:
            continue
        found.append({
            "name": name, "udc": g.bound_udc(name),
            "idVendor": None if spec.id_vendor is None else "0x%04x" % spec.id_vendor,
            "idProduct": None if spec.id_product is None else "0x%04x" % spec.id_product,
            "manufacturer": spec.manufacturer, "product": spec.product, "serialnumber": spec.serialnumber,
            "functions": [fn.name for fn in spec.functions],
        })
    return found


def ports(sysfs):
    vhci = VhciDriver(sysfs)
    bus = UsbBus(sysfs)
    found = []
    for p in vhci.imported():
        local = attachments.local_device(bus, p.local_busid)
        found.append({"port": p.port, "hub": p.hub, "status": p.status.name.lower(), "speed": p.speed.description,
                      "local_busid": p.local_busid, "host": p.host, "remote_port": p.remote_port,
                      "remote_busid": p.remote_busid,
                      "device": local_device_info(local) if local is not None else None})
    return found


def gather(ctx):
    params = ctx.module.params
    sysfs = ctx.sysfs
    port = validate.tcp_port(params["port"])
    timeout = validate.integer(params["timeout"], "timeout", 1, 3600)
    drivers = {
        "usbip_host": sysfs.isdir(HOST_DRIVER),
        "vhci_hcd": sysfs.exists(VHCI + "/nports"),
        "usbip_vudc": sysfs.isdir(VUDC_DRIVER),
        "gadget_configfs": sysfs.isdir(GADGETS),
    }
    result = {"changed": False, "drivers": drivers}
    wanted = set(params["gather"])
    if "devices" in wanted:
        result["devices"] = devices(sysfs)
        result["exported"] = [d["busid"] for d in result["devices"] if d["bound"]]
    if "vudc" in wanted:
        result["vudc"] = vudc_instances(sysfs) if drivers["usbip_vudc"] else []
    if "gadgets" in wanted:
        result["gadgets"] = gadgets(sysfs) if drivers["gadget_configfs"] else []
    if "ports" in wanted:
        result["ports"] = ports(sysfs) if drivers["vhci_hcd"] else []
    if params["server"]:
        result["remote_devices"] = [remote_device_info(d)
                                    for d in client.list_devices(params["server"], port, timeout=timeout)]
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gather=dict(type="list", elements="str", choices=["devices", "vudc", "gadgets", "ports"],
                        default=["devices", "vudc", "gadgets", "ports"]),
            server=dict(type="str"),
            port=dict(type="int", default=3240),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    ctx = Context(module, read_only=True)
    ctx.run(lambda: gather(ctx))


if __name__ == "__main__":
    main()
