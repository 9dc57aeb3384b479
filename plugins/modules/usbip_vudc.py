#!/usr/bin/python
# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: usbip_vudc
short_description: A configfs USB gadget bound to a usbip-vudc instance (USB/IP device mode)
version_added: "0.1.0"
description:
  - Ensures that a USB gadget, described declaratively (IDs, strings, functions such as a mass-storage disk, a
    serial port or a HID device), exists in configfs and is bound to a USB device controller.
  - Bound to a C(usbip-vudc.N) instance, the gadget is offered by C(usbipd --device) as bus ID C(usbip-vudc.N), so
    that a client can attach it with M(usbip.usbip.usbip_attach). Bound to another UDC, such as C(dummy_udc.0), it
    becomes a device of that controller.
  - Attributes that are not given are not managed; functions that are not listed are removed from the gadget.
    Changes are made in the order configfs requires (the gadget is unbound first when its tree must change).
  - Every option is checked before anything is loaded or written, in check mode too; so is the UDC, which must
    exist unless a module that O(load_kernel_modules) loads makes it.
  - In check mode nothing is written; the planned configfs changes are returned in RV(sysfs_changes), the modules
    that would be loaded in RV(kernel_modules). Each of those is looked up with C(modprobe -n), so that a module the
    running kernel lacks fails check mode as it fails the real run.
  - The diff shows the managed part of the gadget tree (descriptor fields, strings, functions and their
    attributes) and the UDC it is bound to.
  - Needs configfs mounted on C(/sys/kernel/config), the C(libcomposite) kernel module, each function's
    C(usb_f_*) module and, for device mode, C(usbip-vudc).
extends_documentation_fragment:
  - usbip.usbip._attributes  # first: of two fragments, the first one's attribute fields win
  - ansible.builtin.action_common_attributes
  - usbip.usbip.kernel_modules
options:
  name:
    description: Name of the gadget, the directory below C(/sys/kernel/config/usb_gadget).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the gadget and binds it to O(udc).
      - V(absent) unbinds the gadget and removes it from configfs.
    type: str
    choices: [present, absent]
    default: present
  udc:
    description:
      - The USB device controller to bind the gadget to, C(usbip-vudc.N) for device mode, by the name
        C(/sys/class/udc) lists (one path component). Required with O(state=present).
      - It must exist and be free (or bound to this gadget already). With O(load_kernel_modules), C(usbip-vudc) is
        loaded with C(num=N+1) instances for C(usbip-vudc.N), and C(dummy_hcd) for C(dummy_udc.N), when the module
        is not loaded yet; a module loaded already with fewer instances is not reloaded, and the task fails.
    type: str
  id_vendor:
    description: idVendor, as four hex digits (V('1209')) or an integer. Required with O(state=present).
    type: raw
  id_product:
    description: idProduct, as four hex digits or an integer. Required with O(state=present).
    type: raw
  bcd_device:
    description: bcdDevice, as four hex digits (V('0100')) or an integer; binary-coded decimal.
    type: raw
  bcd_usb:
    description: bcdUSB, as four hex digits (V('0200')) or an integer; binary-coded decimal.
    type: raw
  device_class:
    description: bDeviceClass.
    type: int
  device_subclass:
    description: bDeviceSubClass.
    type: int
  device_protocol:
    description: bDeviceProtocol.
    type: int
  manufacturer:
    description: Manufacturer string (US English).
    type: str
  product:
    description: Product string (US English).
    type: str
  serial:
    description: Serial number string (US English).
    type: str
    aliases: [serialnumber]
  configuration:
    description: Name of the configuration C(c.1).
    type: str
  max_power:
    description: MaxPower of the configuration, in mA.
    type: int
  functions:
    description:
      - The gadget's functions, each linked into configuration C(c.1). Functions not listed are removed.
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description:
          - Function type, as configfs names it (its module is loaded through the alias C(usbfunc:<type>)).
          - V(mass_storage) and V(hid) have the attributes below; the others are created without attributes.
        type: str
        required: true
        choices: [acm, ecm, eem, ffs, geth, gser, hid, mass_storage, midi, midi2, ncm, obex, phonet, printer, rndis,
                  tcm, uac1, uac1_legacy, uac2, uvc]
      instance:
        description: Instance name; the function's directory is C(<type>.<instance>).
        type: str
        default: "0"
      file:
        description:
          - V(mass_storage) only. Backing file or block device of LUN 0; must exist. Relative paths are refused.
        type: path
      ro:
        description: V(mass_storage) only. LUN 0 is read-only.
        type: bool
      removable:
        description: V(mass_storage) only. LUN 0 is removable.
        type: bool
      cdrom:
        description: V(mass_storage) only. LUN 0 is a CD-ROM.
        type: bool
      nofua:
        description: V(mass_storage) only. Ignore the FUA flag of SCSI writes.
        type: bool
      stall:
        description: V(mass_storage) only. Allow bulk endpoint halts.
        type: bool
      protocol:
        description: V(hid) only. bInterfaceProtocol (1 keyboard, 2 mouse).
        type: int
      subclass:
        description: V(hid) only. bInterfaceSubClass (1 boot interface).
        type: int
      report_length:
        description: V(hid) only. Report length in bytes.
        type: int
      report_desc:
        description: V(hid) only. Report descriptor, as hex digits (spaces and colons are ignored).
        type: str
notes:
  - Configfs must be mounted (systemd does it; otherwise C(mount -t configfs none /sys/kernel/config)).
seealso:
  - module: usbip.usbip.usbip_attach
  - module: usbip.usbip.usbip_info
"""

EXAMPLES = r"""
- name: Offer a 64 MiB disk image as a USB stick through usbip-vudc.0
  usbip.usbip.usbip_vudc:
    name: stick
    udc: usbip-vudc.0
    id_vendor: "1d6b"
    id_product: "0104"
    manufacturer: Example
    product: Test stick
    serial: STICK-0001
    functions:
      - type: mass_storage
        file: /srv/images/stick.img
        removable: true
  become: true

- name: A serial port and a keyboard
  usbip.usbip.usbip_vudc:
    name: console
    udc: usbip-vudc.1
    id_vendor: "1209"
    id_product: "0001"
    functions:
      - type: acm
      - type: hid
        protocol: 1
        subclass: 1
        report_length: 8
        report_desc: 05010906a101050719e029e71500250175019508810295017508810395058102c0
  become: true

- name: Remove the stick
  usbip.usbip.usbip_vudc:
    name: stick
    state: absent
  become: true
"""

RETURN = r"""
gadget:
  description: The managed part of the gadget after the task (in check mode, what it would be); null when absent.
  returned: success
  type: dict
  sample: {"name": "stick", "udc": "usbip-vudc.0", "idVendor": "0x1d6b", "idProduct": "0x0104",
           "functions": {"mass_storage.0": {"lun.0/file": "/srv/images/stick.img", "lun.0/removable": true}}}
device:
  description:
    - With a C(usbip-vudc.N) UDC, the device as C(usbipd --device) offers it (not in check mode).
  returned: success, O(state=present) and a usbip-vudc UDC
  type: dict
  contains:
    busid:
      description: The bus ID clients attach, the instance name.
      type: str
      sample: usbip-vudc.0
    usbid:
      description: C(vendor:product).
      type: str
    usbip_status:
      description: C(available), C(used) or C(error).
      type: str
sysfs_changes:
  description: The configfs changes made, or in check mode the ones that would be made, in order.
  returned: always
  type: list
  elements: dict
  sample: [{"op": "mkdir", "path": "/sys/kernel/config/usb_gadget/stick", "value": ""}]
kernel_modules:
  description: Kernel modules loaded by the task (in check mode, that would be loaded).
  returned: always
  type: list
  elements: str
  sample: [libcomposite, usb_f_mass_storage, usbip-vudc]
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_args import KERNEL_MODULES_ARGS
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_module import diff, run
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_results import hex4, status_name
from ansible_collections.usbip.usbip.plugins.module_utils.usbip import matching
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.errors import InvalidArgument
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs import gadget
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.errors import DriverNotLoaded
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.gadget import (
    GadgetDriver,
    GadgetFunction,
    GadgetSpec,
)
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.vudc import VudcDriver


def _function_options():
    """(option, configfs attribute, function types that have it, value type), from gadget.py's table.

    The option is the attribute's last path component (``lun.0/file`` -> ``file``).
    """
    found = {}
    for kind, attrs in gadget.FUNCTION_ATTRS.items():
        for attr, value_type in attrs.items():
            found.setdefault(attr, ([], value_type))[0].append(kind)
    return tuple((attr.rpartition("/")[2], attr, tuple(kinds), value_type)
                 for attr, (kinds, value_type) in found.items())


FUNCTION_OPTIONS = _function_options()
# The argument type of each attribute value type (report_desc: hex digits), and options that are paths.
_ARG_TYPES = {bool: "bool", int: "int", str: "str", bytes: "str"}
_PATH_OPTIONS = ("file",)
_INSTANCE = re.compile(r"[A-Za-z0-9_-]{1,30}")


def function_spec(entry):
    kind, instance = entry["type"], entry["instance"]  # the type is one of the argument spec's choices
    if not isinstance(instance, str) or not _INSTANCE.fullmatch(instance):
        raise InvalidArgument("invalid instance %r of function %s" % (instance, kind))
    attrs = {}
    for option, attr, kinds, _value_type in FUNCTION_OPTIONS:
        value = entry.get(option)
        if value is None:
            continue
        if kind not in kinds:
            raise InvalidArgument("option %s is only valid for %s functions, not %s"
                                  % (option, " and ".join(kinds), kind))
        if option == "file":
            if not os.path.isabs(value):
                raise InvalidArgument("backing file %r of %s.%s must be an absolute path" % (value, kind, instance))
            if not os.path.exists(value):
                raise InvalidArgument("backing file %s of %s.%s does not exist" % (value, kind, instance))
            # The kernel shows the path it opened, with links resolved; compare like with like.
            value = os.path.realpath(value)
        elif option == "report_desc":
            digits = re.sub(r"[\s:]", "", value)
            try:
                value = bytes.fromhex(digits)
            except ValueError:
                raise InvalidArgument("invalid report_desc of %s.%s: hex digits expected" % (kind, instance)) from None
        attrs[attr] = value
    return GadgetFunction("%s.%s" % (kind, instance), attrs)


def gadget_spec(params):
    def usb_id(name, what):
        return None if params[name] is None else matching.usb_id(params[name], what)

    return GadgetSpec(
        name=params["name"],
        id_vendor=usb_id("id_vendor", "id_vendor"),
        id_product=usb_id("id_product", "id_product"),
        bcd_usb=usb_id("bcd_usb", "bcd_usb"),
        bcd_device=usb_id("bcd_device", "bcd_device"),
        device_class=params["device_class"],
        device_subclass=params["device_subclass"],
        device_protocol=params["device_protocol"],
        manufacturer=params["manufacturer"],
        product=params["product"],
        serialnumber=params["serial"],
        configuration=params["configuration"],
        max_power=params["max_power"],
        functions=tuple(function_spec(entry) for entry in params["functions"] or ()),
    )


def _shown(value, fmt="%s"):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, bytes):
        return value.hex()  # report_desc: results must be text
    return fmt % value


def view(current, managed, udc):
    """The managed part of a gadget (``current``: a spec read back, or the wanted one) as the diff shows it."""
    if current is None:
        return None
    data = {"name": current.name, "udc": udc}
    for field, attr, fmt in gadget.FIELDS:
        if getattr(managed, field) is not None:
            data[attr] = _shown(getattr(current, field), fmt)
    wanted = {fn.name: fn for fn in managed.functions}
    functions = {}
    for fn in sorted(current.functions, key=lambda f: f.name):
        keys = wanted[fn.name].attrs if fn.name in wanted else {}
        functions[fn.name] = {key: _shown(fn.attrs.get(key)) for key in sorted(keys)}
    data["functions"] = functions
    return data


def kernel_modules_for(spec, udc):
    """What the drivers declare for this gadget: libcomposite, each function's module, the UDC's."""
    wanted = [gadget.KERNEL_MODULE] + [gadget.function_module(fn.name.split(".")[0]) for fn in spec.functions]
    udc_module = gadget.udc_module(udc)
    return wanted + [udc_module] if udc_module is not None else wanted


def check_udc(ctx, gadgets, spec, udc):
    """Before any module is loaded: the UDC exists and is free, unless a load this task makes creates it.

    ``ensure`` checks it again after the loads; checking here too keeps a task
    that must fail from loading modules first, in check mode and real runs alike.
    """
    udc_module = gadget.udc_module(udc)
    if udc_module is None or not ctx.module.params["load_kernel_modules"] or udc_module.loaded(ctx.sysfs):
        gadgets.check_udc(udc, spec.name)


def converge(ctx):
    params = ctx.module.params
    gadgets = GadgetDriver(ctx.sysfs)
    name = params["name"]
    # Every value is checked before anything is loaded, read or written.
    udc = gadget.udc_name(params["udc"]) if params["udc"] is not None else None
    if params["state"] == "absent":
        try:
            current = gadgets.read(name)
        except DriverNotLoaded:
            current = None  # no configfs gadgets at all: nothing to remove
        if current is None:
            result = {"changed": False, "gadget": None}
            if ctx.diff_mode:
                result["diff"] = diff("(absent)\n", "(absent)\n", "gadget %s" % name)
        else:
            before = view(current, current, gadgets.bound_udc(name))
            gadgets.remove(name)
            result = {"changed": True, "gadget": None}
            if ctx.diff_mode:
                result["diff"] = diff(before, "(absent)\n", "gadget %s" % name)
        return result

    spec = gadget.checked(gadget_spec(params))
    check_udc(ctx, gadgets, spec, udc)
    # In check mode the modules that would be loaded read as loaded: ensure() plans every change.
    ctx.load_kernel_modules(kernel_modules_for(spec, udc))
    before_spec = gadgets.read(spec.name)
    before = view(before_spec, spec, gadgets.bound_udc(spec.name) if before_spec else None)
    changed = bool(gadgets.ensure(spec, udc))

    if ctx.check_mode:
        after = view(spec, spec, udc) if changed else before
    else:
        after = view(gadgets.read(spec.name), spec, gadgets.bound_udc(spec.name))
    result = {"changed": changed, "gadget": after}
    if not ctx.check_mode and udc.startswith("usbip-vudc."):
        vudc = VudcDriver(ctx.sysfs)
        device = vudc.describe(udc)
        result["device"] = {"busid": device.busid, "usbid": device.usbid,
                            "id_vendor": hex4(device.id_vendor), "id_product": hex4(device.id_product),
                            "usbip_status": status_name(vudc.status(udc))}
    if ctx.diff_mode:
        result["diff"] = diff(before if before is not None else "(absent)\n", after, "gadget %s" % spec.name)
    return result


def main():
    function_options = dict(type=dict(type="str", required=True, choices=sorted(gadget.FUNCTION_MODULES)),
                            instance=dict(type="str", default="0"))
    for option, _attr, _kinds, value_type in FUNCTION_OPTIONS:
        function_options[option] = dict(type="path" if option in _PATH_OPTIONS else _ARG_TYPES[value_type])
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            udc=dict(type="str"),
            id_vendor=dict(type="raw"),
            id_product=dict(type="raw"),
            bcd_device=dict(type="raw"),
            bcd_usb=dict(type="raw"),
            device_class=dict(type="int"),
            device_subclass=dict(type="int"),
            device_protocol=dict(type="int"),
            manufacturer=dict(type="str"),
            product=dict(type="str"),
            serial=dict(type="str", aliases=["serialnumber"]),
            configuration=dict(type="str"),
            max_power=dict(type="int"),
            functions=dict(type="list", elements="dict", default=[], options=function_options),
            **KERNEL_MODULES_ARGS,
        ),
        required_if=[("state", "present", ("udc", "id_vendor", "id_product"))],
        supports_check_mode=True,
    )
    run(module, converge)


if __name__ == "__main__":
    main()
