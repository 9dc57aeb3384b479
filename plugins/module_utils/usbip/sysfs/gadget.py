# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""USB gadgets in configfs, described declaratively.

A gadget is what a ``usbip-vudc`` or ``dummy_udc`` exports, and the lab builds
its test devices from them, so they are managed like any other state: a
:class:`GadgetSpec` says what should exist, :meth:`GadgetDriver.ensure` converges
the tree and returns the changes, and :meth:`GadgetDriver.read` gives the current
state in the same shape for diffs.

Configfs enforces an order the shell recipes learn the hard way: links into a
configuration are refused while the gadget is bound, a function's attributes
(``f_hid``'s among them) are refused while it is linked, a mass-storage LUN's
``ro`` only changes while its backing file is closed, and directories go away
innermost first. ``ensure`` therefore plans every change before making one, so
that it knows whether to unbind first, and applies them in that order.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable, Dict, List, Optional, Tuple, Union

from .. import validate
from ..errors import InvalidArgument
from . import vudc
from .errors import DeviceBusy, DeviceNotFound, DriverNotLoaded, SysfsError
from .fs import Change, Sysfs
from .kmod import KernelModule, by_instances

CONFIGFS = "/sys/kernel/config"
GADGETS = CONFIGFS + "/usb_gadget"
UDC_CLASS = "/sys/class/udc"
LANG = "0x409"
CONFIG = "c.1"

AttrValue = Union[str, int, bool, bytes]
Step = Callable[[], None]

# (spec field, configfs attribute, bits): the device descriptor fields, which
# the kernel shows as 0x-prefixed hex.
_DEVICE = (
    ("id_vendor", "idVendor", 16),
    ("id_product", "idProduct", 16),
    ("bcd_usb", "bcdUSB", 16),
    ("bcd_device", "bcdDevice", 16),
    ("device_class", "bDeviceClass", 8),
    ("device_subclass", "bDeviceSubClass", 8),
    ("device_protocol", "bDeviceProtocol", 8),
)
_STRINGS = ("manufacturer", "product", "serialnumber")
#: Each spec field that is one configfs attribute: (field, attribute name, the kernel's text format); the
#: Ansible module shows a gadget in these terms.
FIELDS = tuple((field, attr, "0x%%0%dx" % (bits // 4)) for field, attr, bits in _DEVICE) \
    + tuple((field, field, "%s") for field in _STRINGS) \
    + (("configuration", "configuration", "%s"), ("max_power", "MaxPower", "%d"))
# The attributes of known functions: read back into a spec, and the type a
# desired value is taken as (so that `ro: 1` and `ro: true` mean the same).
FUNCTION_ATTRS: Dict[str, Dict[str, type]] = {
    "mass_storage": {"stall": bool, "lun.0/file": str, "lun.0/ro": bool, "lun.0/removable": bool,
                     "lun.0/cdrom": bool, "lun.0/nofua": bool},
    "acm": {},
    "hid": {"protocol": int, "subclass": int, "report_length": int, "report_desc": bytes},
}
#: The function types configfs knows (each module's ``usbfunc:<type>`` alias) and the module that provides
#: each. A gadget's functions are checked against this table before anything is loaded or written: an
#: unknown type would only fail later, at the load, or plan a function directory the kernel refuses.
FUNCTION_MODULES: Dict[str, str] = {
    "acm": "usb_f_acm",
    "ecm": "usb_f_ecm",
    "eem": "usb_f_eem",
    "ffs": "usb_f_fs",
    "geth": "usb_f_ecm_subset",
    "gser": "usb_f_serial",
    "hid": "usb_f_hid",
    "mass_storage": "usb_f_mass_storage",
    "midi": "usb_f_midi",
    "midi2": "usb_f_midi2",
    "ncm": "usb_f_ncm",
    "obex": "usb_f_obex",
    "phonet": "usb_f_phonet",
    "printer": "usb_f_printer",
    "rndis": "usb_f_rndis",
    "tcm": "usb_f_tcm",
    "uac1": "usb_f_uac1",
    "uac1_legacy": "usb_f_uac1_legacy",
    "uac2": "usb_f_uac2",
    "uvc": "usb_f_uvc",
}
_USB_STRING_MAX = 126  # the kernel's USB_MAX_STRING_LEN
_GADGET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,39}")
_UDC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")
_FUNCTION_NAME = re.compile(r"([a-z][a-z0-9_]*)\.[A-Za-z0-9_-]+")
_ATTR_PATH = re.compile(r"(?:[a-z]+\.[0-9]+/)?[A-Za-z][A-Za-z0-9_]*")
_UDC_INSTANCE = re.compile(r"(usbip-vudc|dummy_udc)\.([0-9]{1,3})")

#: The module behind configfs gadgets.
KERNEL_MODULE = KernelModule("libcomposite", (GADGETS, "/sys/module/libcomposite"))


def function_module(kind: str) -> KernelModule:
    """A function type's module, loaded through the alias configfs itself would request.

    Only the types of :data:`FUNCTION_MODULES` have one: a spec's functions
    are checked against that table (:func:`checked`) before their modules are
    asked for, and a guessed ``usb_f_<type>`` would only fail later, at the load.
    """
    if kind not in FUNCTION_MODULES:
        raise InvalidArgument("unknown function type %r (known: %s)" % (kind, ", ".join(sorted(FUNCTION_MODULES))))
    name = FUNCTION_MODULES[kind]
    return KernelModule(name, ("/sys/module/" + name,), alias="usbfunc:" + kind)


def udc_module(udc: Optional[str]) -> Optional[KernelModule]:
    """The module that makes a UDC of this name (``usbip-vudc.N``, ``dummy_udc.N``); None for others."""
    match = _UDC_INSTANCE.fullmatch(udc or "")
    if not match:
        return None
    instances = int(match.group(2)) + 1
    if match.group(1) == vudc.DRIVER_NAME:
        return vudc.kernel_module(instances)
    module = by_instances("dummy_hcd", "/sys/module/dummy_hcd", instances, UDC_CLASS, "dummy_udc")
    return dataclasses.replace(module, probes=module.probes + ("/sys/devices/platform/dummy_udc.0",))


@dataclasses.dataclass(frozen=True)
class GadgetFunction:
    """``functions/<type>.<instance>``; ``attrs`` maps paths inside it (``lun.0/file``) to values."""

    name: str
    attrs: Dict[str, AttrValue] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class GadgetSpec:
    """One gadget with configuration ``c.1`` and strings for US English.

    A field left None is not managed; every function listed is linked into
    ``c.1`` and functions not listed are removed.
    """

    name: str
    id_vendor: Optional[int]
    id_product: Optional[int]
    bcd_usb: Optional[int] = None
    bcd_device: Optional[int] = None
    device_class: Optional[int] = None
    device_subclass: Optional[int] = None
    device_protocol: Optional[int] = None
    manufacturer: Optional[str] = None
    product: Optional[str] = None
    serialnumber: Optional[str] = None
    configuration: Optional[str] = None
    max_power: Optional[int] = None  # mA
    functions: Tuple[GadgetFunction, ...] = ()


@dataclasses.dataclass(frozen=True)
class Udc:
    """A USB device controller; ``function`` names the gadget bound to it."""

    name: str
    state: Optional[str]
    function: Optional[str]


class GadgetDriver:
    """The gadgets under ``/sys/kernel/config/usb_gadget``."""

    def __init__(self, sysfs: Sysfs) -> None:
        self.sysfs = sysfs

    def check_loaded(self) -> None:
        if not self.sysfs.isdir(GADGETS):
            raise DriverNotLoaded("configfs USB gadgets are unavailable (%s is missing)" % GADGETS,
                                  hint="modprobe libcomposite; mount -t configfs none %s" % CONFIGFS)

    def names(self) -> List[str]:
        self.check_loaded()
        return [name for name in self.sysfs.listdir(GADGETS) if self.sysfs.isdir(_gadget(name))]

    def udcs(self) -> List[Udc]:
        return [
            Udc(name, self.sysfs.read_optional("%s/%s/state" % (UDC_CLASS, name)),
                self.sysfs.read_optional("%s/%s/function" % (UDC_CLASS, name)) or None)
            for name in self.sysfs.listdir(UDC_CLASS)
        ]

    def bound_udc(self, name: str) -> Optional[str]:
        name = _name(name, "gadget name", _GADGET_NAME)
        self.check_loaded()
        return self.sysfs.read_optional(_gadget(name) + "/UDC") or None

    def read(self, name: str) -> Optional[GadgetSpec]:
        """The gadget as a spec (None where it does not exist), for diffs."""
        name = _name(name, "gadget name", _GADGET_NAME)
        self.check_loaded()
        g = _gadget(name)
        if not self.sysfs.isdir(g):
            return None
        values: Dict[str, object] = {field: self._typed("%s/%s" % (g, attr), int) for field, attr, _bits in _DEVICE}
        for field in _STRINGS:
            values[field] = self.sysfs.read_optional("%s/strings/%s/%s" % (g, LANG, field))
        cfg = "%s/configs/%s" % (g, CONFIG)
        values["configuration"] = self.sysfs.read_optional("%s/strings/%s/configuration" % (cfg, LANG))
        values["max_power"] = self._typed(cfg + "/MaxPower", int)
        functions = []
        for fname in self.sysfs.listdir(g + "/functions"):
            kinds = FUNCTION_ATTRS.get(fname.split(".")[0], {})
            path = "%s/functions/%s" % (g, fname)
            functions.append(GadgetFunction(fname, {
                rel: value for rel, kind in kinds.items()
                if (value := self._typed("%s/%s" % (path, rel), kind)) is not None
            }))
        return GadgetSpec(name=name, functions=tuple(functions), **values)

    def ensure(self, spec: GadgetSpec, udc: Optional[str] = None) -> List[Change]:
        """Make the gadget match ``spec`` and bind it to ``udc`` (None: leave it unbound)."""
        spec = checked(spec)
        if udc is not None:
            udc = udc_name(udc)
        self.check_loaded()
        if udc is not None:
            self.check_udc(udc, spec.name)
        start = len(self.sysfs.journal)
        g = _gadget(spec.name)
        steps = self._plan(spec)
        bound = self.sysfs.read_optional(g + "/UDC") or None
        if bound and (steps or bound != udc):
            self._unbind(g)
            bound = None
        for step in steps:
            step()
        if udc is not None and bound != udc:
            self.sysfs.write(g + "/UDC", udc)
        return self.sysfs.journal[start:]

    def remove(self, name: str) -> List[Change]:
        """Take the gadget apart in the order configfs requires; [] when it does not exist."""
        name = _name(name, "gadget name", _GADGET_NAME)
        self.check_loaded()
        s, g = self.sysfs, _gadget(name)
        if not s.isdir(g):
            return []
        start = len(s.journal)
        if s.read_optional(g + "/UDC"):
            self._unbind(g)
        for cfg in s.listdir(g + "/configs"):
            path = "%s/configs/%s" % (g, cfg)
            self._unlink_all(path)
            for lang in s.listdir(path + "/strings"):
                s.rmdir("%s/strings/%s" % (path, lang))
            s.rmdir(path)
        self._unlink_all(g + "/os_desc")
        for fname in s.listdir(g + "/functions"):
            s.rmdir("%s/functions/%s" % (g, fname))
        for lang in s.listdir(g + "/strings"):
            s.rmdir("%s/strings/%s" % (g, lang))
        s.rmdir(g)
        return s.journal[start:]

    # -- planning ---------------------------------------------------------------
    def _plan(self, spec: GadgetSpec) -> List[Step]:
        g = _gadget(spec.name)
        steps: List[Step] = []
        self._mkdir(steps, g)
        for field, attr, bits in _DEVICE:
            value = getattr(spec, field)
            if value is not None and not self._same("%s/%s" % (g, attr), value):
                steps.append(self._write("%s/%s" % (g, attr), "0x%0*x" % (bits // 4, value)))
        if any(getattr(spec, field) is not None for field in _STRINGS):
            strings = "%s/strings/%s" % (g, LANG)
            self._mkdir(steps, strings)
            for field in _STRINGS:
                self._set(steps, "%s/%s" % (strings, field), getattr(spec, field))
        cfg = "%s/configs/%s" % (g, CONFIG)
        self._mkdir(steps, cfg)
        self._set(steps, cfg + "/MaxPower", spec.max_power)
        if spec.configuration is not None:
            self._mkdir(steps, "%s/strings/%s" % (cfg, LANG))
            self._set(steps, "%s/strings/%s/configuration" % (cfg, LANG), spec.configuration)
        self._plan_functions(steps, g, cfg, spec.functions)
        return steps

    def _plan_functions(self, steps: List[Step], g: str, cfg: str, functions: Tuple[GadgetFunction, ...]) -> None:
        s = self.sysfs
        links = {}
        for entry in s.listdir(cfg):
            target = s.link_name("%s/%s" % (cfg, entry))
            if target is not None:
                links[target] = "%s/%s" % (cfg, entry)
        wanted = {fn.name for fn in functions}
        for fname in s.listdir(g + "/functions"):
            if fname not in wanted:
                if fname in links:
                    steps.append(functools.partial(s.unlink, links[fname]))
                steps.append(functools.partial(s.rmdir, "%s/functions/%s" % (g, fname)))
        for fn in functions:
            path = "%s/functions/%s" % (g, fn.name)
            changes = self._plan_function(path, fn)
            linked = fn.name in links
            if changes and linked:
                steps.append(functools.partial(s.unlink, links[fn.name]))
                linked = False
            steps.extend(changes)
            if not linked:
                steps.append(functools.partial(s.symlink, path, "%s/%s" % (cfg, fn.name)))

    def _plan_function(self, path: str, fn: GadgetFunction) -> List[Step]:
        steps: List[Step] = []
        self._mkdir(steps, path)
        changed = {rel: value for rel, value in fn.attrs.items() if not self._same("%s/%s" % (path, rel), value)}
        if fn.name.startswith("mass_storage."):
            closed = set()
            for rel in [rel for rel in changed if rel.rpartition("/")[2] in ("ro", "cdrom")]:
                backing = rel.rpartition("/")[0] + "/file"
                current = self.sysfs.read_optional("%s/%s" % (path, backing))
                if current and backing not in closed:
                    closed.add(backing)
                    steps.append(self._write("%s/%s" % (path, backing), ""))
                    if changed.setdefault(backing, current) == "":
                        del changed[backing]  # closing it was the change
        # The backing file last: opening it checks ro and cdrom.
        for rel in sorted(changed, key=lambda r: r.rpartition("/")[2] == "file"):
            steps.append(self._write("%s/%s" % (path, rel), changed[rel]))
        return steps

    def _mkdir(self, steps: List[Step], path: str) -> None:
        if not self.sysfs.isdir(path):
            steps.append(functools.partial(self.sysfs.mkdir, path))

    def _set(self, steps: List[Step], path: str, value: Optional[AttrValue]) -> None:
        if value is not None and not self._same(path, value):
            steps.append(self._write(path, value))

    def _write(self, path: str, value: AttrValue) -> Step:
        if isinstance(value, bytes):
            return functools.partial(self.sysfs.write, path, value)
        if isinstance(value, bool):
            value = "1" if value else "0"
        # Configfs refuses a 0-byte write (EFAULT); its text stores strip the newline
        # that empties a string, closes a LUN or unbinds a UDC.
        return functools.partial(self.sysfs.write, path, str(value) or "\n")

    def _same(self, path: str, value: AttrValue) -> bool:
        return self._typed(path, type(value)) == value

    def _typed(self, path: str, kind: type) -> Optional[AttrValue]:
        """An attribute read as ``kind``; None when absent or not of that shape."""
        if kind is bytes:
            try:
                return self.sysfs.read_bytes(path)
            except SysfsError:
                return None
        text = self.sysfs.read_optional(path)
        if text is None or kind is str:
            return text
        text = text.strip()
        if kind is bool:
            return {"1": True, "Y": True, "0": False, "N": False}.get(text)
        try:
            return int(text, 0)
        except ValueError:
            return None

    def _unbind(self, g: str) -> None:
        self._write(g + "/UDC", "")()

    def _unlink_all(self, directory: str) -> None:
        for entry in self.sysfs.listdir(directory):
            path = "%s/%s" % (directory, entry)
            if self.sysfs.link_name(path) is not None:
                self.sysfs.unlink(path)

    def check_udc(self, udc: str, gadget: str) -> None:
        """The UDC exists and is free, or bound to ``gadget`` already.

        :meth:`ensure` checks it; a caller that loads kernel modules first checks
        it before them too, when no load would make the UDC.
        """
        udc = udc_name(udc)
        udcs = {u.name: u for u in self.udcs()}
        if udc not in udcs:
            raise DeviceNotFound("no UDC named %s (available: %s)" % (udc, ", ".join(sorted(udcs)) or "none"),
                                 hint="modprobe usbip-vudc, or dummy_hcd")
        owner = udcs[udc].function
        if owner and owner != gadget:
            raise DeviceBusy("UDC %s is already used by gadget %s" % (udc, owner))


def _gadget(name: str) -> str:
    return "%s/%s" % (GADGETS, name)


# -- validation (before any sysfs access) ------------------------------------------
def _name(value: object, what: str, pattern: re.Pattern) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidArgument("invalid %s %r" % (what, value))
    return value


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isprintable() or len(value) > limit:
        raise InvalidArgument("invalid %s %r: printable ASCII of at most %d characters expected" % (
            what, value, limit))
    return value


def udc_name(value: object) -> str:
    """A UDC name as ``/sys/class/udc`` lists them (``usbip-vudc.0``, ``fe980000.usb``): one path component."""
    name = _name(value, "UDC name", _UDC_NAME)
    if ".." in name:
        raise InvalidArgument("invalid UDC name %r" % (value,))
    return name


def checked(spec: GadgetSpec) -> GadgetSpec:
    """``spec`` with every value checked (and normalised: ``ro: 1`` is True); InvalidArgument otherwise.

    :meth:`GadgetDriver.ensure` checks its spec so; a caller that loads kernel
    modules first checks it before them too.
    """
    if not isinstance(spec, GadgetSpec):
        raise InvalidArgument("a GadgetSpec is expected, got %r" % (spec,))
    _name(spec.name, "gadget name", _GADGET_NAME)
    values: Dict[str, object] = {}
    for field, _attr, bits in _DEVICE:
        value = getattr(spec, field)
        if value is None:
            continue
        value = validate.integer(value, field, 0, (1 << bits) - 1)
        if field.startswith("bcd") and any((value >> shift) & 15 > 9 for shift in (0, 4, 8, 12)):
            raise InvalidArgument("invalid %s 0x%04x: not binary-coded decimal" % (field, value))
        values[field] = value
    for field in _STRINGS + ("configuration",):
        if getattr(spec, field) is not None:
            values[field] = _text(getattr(spec, field), field, _USB_STRING_MAX)
    if spec.max_power is not None:
        values["max_power"] = validate.integer(spec.max_power, "max_power", 0, 2040)
    names = [fn.name for fn in spec.functions]
    if len(set(names)) != len(names):
        raise InvalidArgument("functions listed twice in %s" % ", ".join(names))
    values["functions"] = tuple(_checked_function(fn) for fn in spec.functions)
    return dataclasses.replace(spec, **values)


def _checked_function(fn: GadgetFunction) -> GadgetFunction:
    match = _FUNCTION_NAME.fullmatch(fn.name) if isinstance(fn.name, str) and len(fn.name) < 40 else None
    if not match:
        raise InvalidArgument("invalid function name %r: expected <type>.<instance>, e.g. mass_storage.0" % (
            fn.name,))
    if match.group(1) not in FUNCTION_MODULES:
        raise InvalidArgument("unknown function type %r of %s (known: %s)" % (
            match.group(1), fn.name, ", ".join(sorted(FUNCTION_MODULES))))
    kinds = FUNCTION_ATTRS.get(match.group(1), {})
    attrs = {}
    for rel, value in fn.attrs.items():
        what = "%s/%s" % (fn.name, rel)
        if not isinstance(rel, str) or not _ATTR_PATH.fullmatch(rel):
            raise InvalidArgument("invalid attribute %r of %s" % (rel, fn.name))
        attrs[rel] = _checked_value(value, kinds.get(rel), what)
    return GadgetFunction(fn.name, attrs)


def _checked_value(value: object, kind: Optional[type], what: str) -> AttrValue:
    """A value of the attribute's known type (bools also as 0/1), or of any writable type."""
    if kind is bool and value in (0, 1, "0", "1"):
        return bool(int(value))
    if kind is int or (kind is None and isinstance(value, int) and not isinstance(value, bool)):
        return validate.integer(value, what, 0, 0xFFFF)
    if kind in (bytes, None) and isinstance(value, (bytes, bytearray)):
        if len(value) > 4096:
            raise InvalidArgument("invalid %s: longer than 4096 bytes" % what)
        return bytes(value)
    if kind in (str, None) and isinstance(value, str):
        return _text(value, what, 4095)
    if kind is None and isinstance(value, bool):
        return value
    raise InvalidArgument("invalid %s %r" % (what, value))
