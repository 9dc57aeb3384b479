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
  declared_attachments:
    description:
      - Attachments this client should have, as the usbip_client role declares them; the answer is in
        RV(declared_attachments) and RV(undeclared_ports). The vhci ports are read whether or not V(ports) is
        gathered.
      - A port satisfies a declaration when it comes from the same server (the same name, or two names that share
        an address, as M(usbip.usbip.usbip_attach) decides) on the same TCP port, and from the declared bus ID or a
        device the match accepts. A port whose device has not enumerated yet satisfies every match declaration for
        its server (its IDs are unknown; never detach on a guess).
      - A declaration with O(declared_attachments[].all) is satisfied by every port from its server whose device the
        match accepts (every port from the server without a match), so none of them is undeclared.
      - A port path is checked against the server's bus ID the port records, by its devpath (the record does not name
        the server's controller).
    type: list
    elements: dict
    suboptions:
      server:
        description: Host name or address of the USB/IP server.
        type: str
        required: true
      port:
        description: TCP port of the server; 3240, or 3241 with O(declared_attachments[].tls).
        type: int
      tls:
        description: The attachment goes through USB/IP inside TLS (its default port is 3241).
        type: bool
        default: false
      server_name:
        description: Not used here; accepted so that a declaration of the usbip_client role passes as it is.
        type: str
      busid:
        description: Bus ID of the device on the server. Exactly one of O(declared_attachments[].busid) and
          O(declared_attachments[].match) is required, unless O(declared_attachments[].all) is set.
        type: str
      match:
        description: Vendor and product IDs of the device, each four hex digits or an integer, and its port path on
          the server.
        type: dict
        suboptions:
          vendor:
            description: Vendor ID.
            type: raw
          product:
            description: Product ID.
            type: raw
          port_path:
            description: Physical port on the server, V(<controller>-<devpath>) or a bare devpath.
            type: str
      all:
        description: The declaration covers every device of the server its match accepts (every device of the
          server without a match), as the usbip_client role declares a pool. Not with a bus ID.
        type: bool
        default: false
  export_rules:
    description:
      - Export rules, as the usbip_server role declares them; the answer is in RV(export_rules) and
        RV(undeclared_exports). The local devices are read whether or not V(devices) is gathered.
      - A rule accepts every exportable device (hubs and devices attached through vhci excepted) with its bus ID,
        or that its match accepts, as usbipd decides.
    type: list
    elements: dict
    suboptions:
      busid:
        description: Bus ID of the device. Exactly one of O(export_rules[].busid) and O(export_rules[].match) is
          required.
        type: str
      match:
        description: Stable identity of the device; every criterion given must hold.
        type: dict
        suboptions:
          vendor:
            description: Vendor ID, four hex digits or an integer.
            type: raw
          product:
            description: Product ID, four hex digits or an integer.
            type: raw
          serial:
            description: Serial number string, exactly.
            type: str
          port_path:
            description: Physical port, V(<controller>-<devpath>) or a bare devpath.
            type: str
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

- name: Which declared attachments are in place, and which ports nothing declares?
  usbip.usbip.usbip_info:
    gather: []
    declared_attachments:
      - {server: lab-server.example.com, busid: 1-1.4}
      - {server: lab-server.example.com, match: {vendor: "0403", product: "6001"}}
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
declared_attachments:
  description: Each declaration of O(declared_attachments), in order, with the vhci ports that satisfy it.
  returned: when O(declared_attachments) is given
  type: list
  elements: dict
  contains:
    attachment:
      description: The declaration, C(server:port/busid) or C(server:port/vendor=... product=...).
      type: str
      sample: lab-server:3240/vendor=0403 product=6001
    attached:
      description: Whether a port satisfies it.
      type: bool
    ports:
      description: The vhci ports that satisfy it.
      type: list
      elements: int
    local_busids:
      description: Local bus IDs of those ports' devices (ports still enumerating left out).
      type: list
      elements: str
undeclared_ports:
  description: vhci ports attached from a named server that no declaration of O(declared_attachments) accepts, as in
    RV(ports). Ports whose records name no server are left out.
  returned: when O(declared_attachments) is given
  type: list
  elements: dict
export_rules:
  description: Each rule of O(export_rules), in order, with the exportable local devices it accepts.
  sample: [{"rule": "serial=FT5XK2QA", "busids": ["1-1.4"]}, {"rule": "busid=1-2", "busids": []}]
  returned: when O(export_rules) is given
  type: list
  elements: dict
  contains:
    rule:
      description: The rule, C(busid=1-1.4) or C(vendor=0403 serial=FT5XK2QA).
      type: str
    busids:
      description: Bus IDs of the devices it accepts.
      type: list
      elements: str
undeclared_exports:
  description: Bus IDs of the devices bound to C(usbip-host) that no rule of O(export_rules) accepts.
  returned: when O(export_rules) is given
  type: list
  elements: str
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
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.errors import InvalidArgument
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.matching import Match
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.net import client
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.protocol.constants import USBIP_PORT, USBIP_TLS_PORT
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


def imported_ports(sysfs):
    """Each vhci port in use with the local device it became (None while it has not enumerated)."""
    bus = UsbBus(sysfs)
    return [(p, attachments.local_device(bus, p.local_busid)) for p in VhciDriver(sysfs).imported()]


def port_info(p, local):
    return {"port": p.port, "hub": p.hub, "status": p.status.name.lower(), "speed": p.speed.description,
            "local_busid": p.local_busid, "host": p.host, "remote_port": p.remote_port,
            "remote_busid": p.remote_busid, "device": local_device_info(local) if local is not None else None}


def ports(sysfs):
    return [port_info(p, local) for p, local in imported_ports(sysfs)]


def _given(criteria):
    """The criteria of a match that were given (the argument spec fills the others with None), in their order."""
    return {name: value for name, value in (criteria or {}).items() if value is not None}


def _label(criteria):
    """How the roles name a match in their reports: ``vendor=0403 product=6001``, values as given."""
    return " ".join("%s=%s" % item for item in criteria.items())


class Declaration:
    """One declared attachment: which vhci ports satisfy it.

    The server is compared with ``attachments.same_host``, as usbip_attach and
    usbip-attachd compare it, so that a port attached through another name of
    the declared server (``127.0.0.1`` for ``localhost``) counts as declared.
    """

    def __init__(self, spec):
        self.server = spec["server"]
        default_port = USBIP_TLS_PORT if spec.get("tls") else USBIP_PORT
        self.port = validate.tcp_port(spec["port"] if spec.get("port") is not None else default_port)
        self.busid = spec.get("busid")
        every = bool(spec.get("all"))
        if every and self.busid is not None:
            raise InvalidArgument("all: true declares every device a match accepts (or every device of the server, "
                                  "without a match): not with busid %s" % self.busid)
        if not every and self.busid is None and spec.get("match") is None:
            raise InvalidArgument("one of the following is required: busid, match (or all: true)")
        criteria = _given(spec.get("match"))
        self.match = None if self.busid is not None or spec.get("match") is None else Match.checked(**criteria)
        what = self.busid if self.busid is not None else _label(criteria)
        if every:
            what = "all" + (" " + what if what else "")
        self.label = "%s:%d/%s" % (self.server, self.port, what)

    def accepts(self, imported, local):
        if imported.remote_port != self.port or not attachments.same_host(imported.host, self.server):
            return False
        if self.busid is not None:
            return imported.remote_busid == self.busid
        if self.match is None:  # all, without a match: every device of the server
            return True
        if not self.match.may_have_come_from(imported.remote_busid):
            return False
        # A device still enumerating has no IDs yet: it satisfies every match for its server (never detach on a guess).
        return local is None or self.match.accepts_ids(local.device)


def declared_attachments(sysfs, specs, vhci_loaded):
    """Each declaration with the ports that satisfy it, and the ports from a named server that none accepts."""
    declarations = [Declaration(spec) for spec in specs]
    in_use = [(p, local) for p, local in imported_ports(sysfs) if p.host] if vhci_loaded else []
    satisfying = [[(p, local) for p, local in in_use if d.accepts(p, local)] for d in declarations]
    status = [{"attachment": d.label, "attached": bool(hits), "ports": [hit[0].port for hit in hits],
               "local_busids": [hit[0].local_busid for hit in hits if hit[0].local_busid]}
              for d, hits in zip(declarations, satisfying)]
    declared = {hit[0].port for hits in satisfying for hit in hits}
    undeclared = [port_info(p, local) for p, local in in_use if p.port not in declared]
    return status, undeclared


def export_rules(sysfs, rules):
    """Each rule with the exportable devices it accepts (every one, as usbipd binds them), and the bound devices
    that no rule accepts."""
    local = HostDriver(sysfs).bus.devices()
    exportable = [dev for dev in local if dev.bindable]
    hits = []
    for rule in rules:
        busid = rule.get("busid")
        if busid is not None:
            label, accepted = "busid=%s" % busid, [dev.busid for dev in exportable if dev.busid == busid]
        else:
            criteria = _given(rule.get("match"))
            match = Match.checked(**criteria)
            label, accepted = _label(criteria), [dev.busid for dev in exportable if match.accepts(dev)]
        hits.append({"rule": label, "busids": accepted})
    declared = {busid for hit in hits for busid in hit["busids"]}
    undeclared = [dev.busid for dev in local if dev.driver == DRIVER_NAME and dev.busid not in declared]
    return hits, undeclared


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
    if params["declared_attachments"] is not None:
        result["declared_attachments"], result["undeclared_ports"] = declared_attachments(
            sysfs, params["declared_attachments"], drivers["vhci_hcd"])
    if params["export_rules"] is not None:
        result["export_rules"], result["undeclared_exports"] = export_rules(sysfs, params["export_rules"])
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
            port=dict(type="int", default=USBIP_PORT),
            timeout=dict(type="int", default=10),
            declared_attachments=dict(
                type="list", elements="dict",
                options=dict(
                    server=dict(type="str", required=True),
                    port=dict(type="int"),
                    tls=dict(type="bool", default=False),
                    server_name=dict(type="str"),
                    busid=dict(type="str"),
                    match=dict(type="dict", options=dict(vendor=dict(type="raw"), product=dict(type="raw"),
                                                         port_path=dict(type="str"))),
                    all=dict(type="bool", default=False),
                ),
                mutually_exclusive=[["busid", "match"]]),
            export_rules=dict(
                type="list", elements="dict",
                options=dict(
                    busid=dict(type="str"),
                    match=dict(type="dict", options=dict(vendor=dict(type="raw"), product=dict(type="raw"),
                                                         serial=dict(type="str"), port_path=dict(type="str"))),
                ),
                mutually_exclusive=[["busid", "match"]], required_one_of=[["busid", "match"]]),
        ),
        supports_check_mode=True,
    )
    ctx = Context(module, read_only=True)
    ctx.run(lambda: gather(ctx))


if __name__ == "__main__":
    main()
