# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A plain directory that behaves like configfs' USB gadget tree.

Configfs creates attributes and default groups when a directory is made,
removes them with it, formats what is written, and refuses changes in the
wrong order. :class:`ConfigfsSysfs` plays those parts after (or, to refuse,
before) the real :class:`Sysfs` call, with the 6.1 kernel's defaults and
formats (``test_gadget.py`` compares them with the real-kernel capture).

It is stricter than the kernel in one way: any change inside a bound gadget
other than to ``UDC`` is refused, which proves that ``ensure`` unbinds first.
Binary attributes (``report_desc``) are written past it and not checked.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, Optional, Set

from usbip.sysfs.errors import SysfsError
from usbip.sysfs.fs import Change, Sysfs

GADGETS = "/sys/kernel/config/usb_gadget"
UDC_CLASS = "/sys/class/udc"

_GADGET_ATTRS = {
    "UDC": "\n", "bDeviceClass": "0x00\n", "bDeviceProtocol": "0x00\n", "bDeviceSubClass": "0x00\n",
    "bMaxPacketSize0": "0x40\n", "bcdDevice": "0x0601\n", "bcdUSB": "0x0200\n", "idProduct": "0x0000\n",
    "idVendor": "0x0000\n", "max_speed": "super-speed-plus\n",
}
_OS_DESC = {"b_vendor_code": "0x00\n", "qw_sign": "\n", "use": "0\n"}
_FUNCTIONS: Dict[str, Dict[str, str]] = {
    "mass_storage": {"stall": "0", "lun.0/cdrom": "0\n", "lun.0/file": "\n", "lun.0/inquiry_string": "\n",
                     "lun.0/nofua": "0\n", "lun.0/removable": "1\n", "lun.0/ro": "0\n"},
    "acm": {"port_num": "0\n"},
    "hid": {"protocol": "0\n", "subclass": "0\n", "report_length": "0\n", "report_desc": "",
            "no_out_endpoint": "0\n", "dev": "0:0\n"},
}
_U16 = ("idVendor", "idProduct", "bcdDevice", "bcdUSB")
_U8 = ("bDeviceClass", "bDeviceSubClass", "bDeviceProtocol", "bMaxPacketSize0", "bmAttributes")
_STRINGS = ("manufacturer", "product", "serialnumber", "configuration")
_BOOLS = ("ro", "removable", "cdrom", "nofua")
_HID = ("protocol", "subclass", "report_length", "no_out_endpoint")


class FakeConfigfs:
    """configfs mounted with libcomposite loaded, and the lab's UDCs."""

    def __init__(self, root: Path, udcs: Iterable[str] = ("dummy_udc.0", "usbip-vudc.0")) -> None:
        self.root = Path(root)
        self.default_groups: Set[str] = set()  # host paths configfs made and removes by itself
        self.host(GADGETS).mkdir(parents=True)
        for name in udcs:
            device = "/sys/devices/platform/%s/udc/%s" % (name, name)
            self.file(device + "/function", "")
            self.file(device + "/state", "not attached\n")
            self.file(device + "/current_speed", "UNKNOWN\n")
            self.file(device + "/maximum_speed", "high-speed\n")
            link = self.host("%s/%s" % (UDC_CLASS, name))
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(device, os.path.dirname(UDC_CLASS + "/x")))

    def host(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def file(self, path: str, text: str) -> None:
        host = self.host(path)
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(text)

    def read(self, path: str) -> str:
        return self.host(path).read_text()

    def sysfs(self, dry_run: bool = False) -> ConfigfsSysfs:
        return ConfigfsSysfs(self, dry_run)

    def snapshot(self) -> Dict[str, str]:
        """Every path below the gadgets, with file contents and link targets, to prove nothing changed."""
        tree = {}
        for top in (GADGETS, UDC_CLASS):
            for dirpath, dirnames, filenames in os.walk(self.host(top)):
                for name in dirnames + filenames:
                    host = os.path.join(dirpath, name)
                    key = "/" + os.path.relpath(host, self.root)
                    if os.path.islink(host):
                        tree[key] = "-> " + os.readlink(host)
                    elif os.path.isdir(host):
                        tree[key] = "<dir>"
                    else:
                        with open(host, "rb") as f:
                            tree[key] = f.read().decode("latin-1")
        return tree


class ConfigfsSysfs(Sysfs):
    """A :class:`Sysfs` whose changes below the gadget tree act like configfs."""

    def __init__(self, fake: FakeConfigfs, dry_run: bool = False) -> None:
        super().__init__(str(fake.root), dry_run)
        self.fake = fake

    # -- configfs reactions -----------------------------------------------------
    def mkdir(self, path: str) -> None:
        parts = self._parts(path)
        kind = parts[2].split(".")[0] if len(parts) == 3 and parts[1] == "functions" else None
        if kind is not None and kind not in _FUNCTIONS and not self.dry_run:
            raise _refuse(self, "mkdir", path, "", errno.ENOENT)  # no such usb_f_* module
        self._check_unbound("mkdir", path, "")
        super().mkdir(path)
        if self.dry_run:
            return
        if len(parts) == 1:
            self._populate(path, _GADGET_ATTRS, ("configs", "functions", "strings", "os_desc"))
            self._populate(path + "/os_desc", _OS_DESC, ())
        elif len(parts) == 3 and parts[1] == "strings":
            self._populate(path, {name: "\n" for name in _STRINGS[:3]}, ())
        elif len(parts) == 3 and parts[1] == "configs":
            self._populate(path, {"MaxPower": "2\n", "bmAttributes": "0x80\n"}, ("strings",))
        elif len(parts) == 5 and parts[1] == "configs":
            self._populate(path, {"configuration": "\n"}, ())
        elif kind is not None:
            self._populate(path, _FUNCTIONS[kind], ("lun.0",) if kind == "mass_storage" else ())

    def rmdir(self, path: str) -> None:
        self._check_unbound("rmdir", path, "")
        if not self.dry_run:
            if self._linked(path):
                raise _refuse(self, "rmdir", path, "", errno.EBUSY)
            if not self._user_items(self.real(path)):
                for entry in os.scandir(self.real(path)):
                    if entry.is_dir():
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
        super().rmdir(path)

    def symlink(self, target: str, path: str) -> None:
        if not self.dry_run:
            gadget = self._gadget(path)
            if self._udc(gadget):
                raise _refuse(self, "symlink", path, target, errno.EINVAL)
            if not target.startswith(gadget + "/functions/") or self._linked(target):
                raise _refuse(self, "symlink", path, target, errno.EEXIST)
        super().symlink(target, path)

    def unlink(self, path: str, missing_ok: bool = True) -> None:
        self._check_unbound("unlink", path, "")
        super().unlink(path, missing_ok)

    def write(self, path: str, value) -> None:
        if isinstance(value, bytes):  # report_desc, the one binary attribute
            function = self._function(path)
            if not self.dry_run and function and self._linked(function):
                raise _refuse(self, "write", path, value.hex(), errno.EBUSY)  # f_hid: opts->refcnt
            super().write(path, value)
            return
        if self.dry_run or not self._parts(path):
            super().write(path, value)
            return
        name = os.path.basename(path)
        text = value[:-1] if value.endswith("\n") else value
        gadget = self._gadget(path)
        if not value:
            raise _refuse(self, "write", path, value, errno.EFAULT)
        if name == "UDC":
            self._bind(path, gadget, text, value)
            return
        self._check_unbound("write", path, value)
        function = self._function(path)
        if name in _HID and function and self._linked(function):
            raise _refuse(self, "write", path, value, errno.EBUSY)  # f_hid: opts->refcnt
        if name in ("ro", "cdrom") and self.read(os.path.dirname(path) + "/file"):
            raise _refuse(self, "write", path, value, errno.EBUSY)  # LUN file open
        if name == "file" and text and not os.path.exists(text):
            raise _refuse(self, "write", path, value, errno.ENOENT)
        super().write(path, value)
        self.fake.file(path, _shown(name, text))

    # -- helpers ------------------------------------------------------------------
    def _parts(self, path: str):
        return path[len(GADGETS) + 1:].split("/") if path.startswith(GADGETS + "/") else []

    def _gadget(self, path: str) -> str:
        return "%s/%s" % (GADGETS, self._parts(path)[0])

    def _function(self, path: str) -> Optional[str]:
        parts = self._parts(path)
        return "/".join([GADGETS] + parts[:3]) if len(parts) > 3 and parts[1] == "functions" else None

    def _udc(self, gadget: str) -> str:
        host = self.real(gadget + "/UDC")
        return Path(host).read_text().strip() if os.path.exists(host) else ""

    def _check_unbound(self, action: str, path: str, value: str) -> None:
        parts = self._parts(path)
        if not self.dry_run and len(parts) > 1 and self._udc(self._gadget(path)):
            raise _refuse(self, action, path, value, errno.EBUSY)

    def _linked(self, function: str) -> bool:
        configs = self.real(self._gadget(function) + "/configs")
        target = self.real(function)
        for cfg in os.listdir(configs) if os.path.isdir(configs) else ():
            for entry in os.scandir(os.path.join(configs, cfg)):
                if entry.is_symlink() and os.path.realpath(entry.path) == os.path.realpath(target):
                    return True
        return False

    def _user_items(self, host_dir: str) -> bool:
        for entry in os.scandir(host_dir):
            if entry.is_symlink():
                return True
            if entry.is_dir() and (entry.path not in self.fake.default_groups or self._user_items(entry.path)):
                return True
        return False

    def _populate(self, path: str, attrs: Dict[str, str], groups: Iterable[str]) -> None:
        for group in list(groups) + [os.path.dirname(rel) for rel in attrs if "/" in rel]:
            host = self.real("%s/%s" % (path, group))
            os.makedirs(host, exist_ok=True)
            self.fake.default_groups.add(host)
        for rel, text in attrs.items():
            self.fake.file("%s/%s" % (path, rel), text)

    def _bind(self, path: str, gadget: str, name: str, value: str) -> None:
        current = self._udc(gadget)
        if not name:
            if not current:
                raise _refuse(self, "write", path, value, errno.ENODEV)
        else:
            udc = self.real("%s/%s" % (UDC_CLASS, name))
            if current or (os.path.exists(udc) and self.read("%s/%s/function" % (UDC_CLASS, name))):
                raise _refuse(self, "write", path, value, errno.EBUSY)
            if not os.path.exists(udc):
                raise _refuse(self, "write", path, value, errno.ENODEV)
            configs = self.real(gadget + "/configs")
            if not os.listdir(configs) or any(not any(e.is_symlink() for e in os.scandir(os.path.join(configs, c)))
                                              for c in os.listdir(configs)):
                raise _refuse(self, "write", path, value, errno.EINVAL)  # a config without functions
        super().write(path, value)
        self._set_udc(gadget, current, name)

    def _set_udc(self, gadget: str, old: str, name: str) -> None:
        self.fake.file(gadget + "/UDC", name + "\n")  # Sysfs.write does not truncate a plain file
        bound = (name, os.path.basename(gadget) + "\n", "configured\n")
        for udc, function, state in ((old, "", "not attached\n"), bound):
            if udc:
                self.fake.file("%s/%s/function" % (UDC_CLASS, udc), function)
                self.fake.file("%s/%s/state" % (UDC_CLASS, udc), state)


def _shown(name: str, text: str) -> str:
    """What the kernel shows after ``text`` was stored."""
    if name in _U16:
        return "0x%04x\n" % int(text, 0)
    if name in _U8:
        return "0x%02x\n" % int(text, 0)
    if name == "MaxPower" or name in _HID:
        return "%d\n" % int(text, 0)
    if name in _BOOLS or name == "stall":
        shown = "1" if text.strip().lower() in ("1", "y", "yes", "true", "on") else "0"
        return shown if name == "stall" else shown + "\n"
    return text + "\n"


def _refuse(sysfs: Sysfs, op: str, path: str, value: str, code: int) -> SysfsError:
    """The kernel's answer to a change, which Sysfs journals before making it."""
    sysfs.journal.append(Change(op, path, value))
    return SysfsError(op, path, OSError(code, os.strerror(code)))
