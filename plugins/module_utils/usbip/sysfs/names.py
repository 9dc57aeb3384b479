# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vendor, product and class names from the USB ID database (``usb.ids``).

The database is about 700 KB and most runs need a handful of names, or none
(the daemon, ``--parsable`` output), so it is read on the first lookup and
parsed only until the answer is found; whatever was parsed stays cached for
later lookups. The vendor section (most of the file) is scanned from vendor
line to vendor line with one regular expression, and a vendor's products
are parsed only when one of them is asked for: a module that names one
device reads a few dozen lines in Python, not seventeen thousand. Output
wording and fallbacks match the C tools, whose lines scripts already parse.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Callable, Dict, List, Optional, Set, Tuple

SEARCH_PATH = (
    "/usr/share/hwdata/usb.ids",
    "/usr/share/misc/usb.ids",
    "/usr/share/usb.ids",
    "/var/lib/usbutils/usb.ids",
)

_VENDOR = re.compile(r"([0-9a-fA-F]{4})\s+(.+)")
_CLASS = re.compile(r"C ([0-9a-fA-F]{2})\s+(.+)")
_CHILD = re.compile(r"\t([0-9a-fA-F]+)\s+(.+)")
_GRANDCHILD = re.compile(r"\t\t([0-9a-fA-F]+)\s+(.+)")
# A line that opens an entry (a vendor, a class, another section's): not indented, not a comment, not empty.
_TOP_LEVEL = re.compile(r"^[^\t#\r\n].*", re.M)


class UsbIds:
    """Lookups in one ``usb.ids`` file; a missing file just yields no names.

    The file lists vendors (with their products) first, then classes (with
    subclasses and protocols), then sections this class ignores. A lookup
    stops parsing as soon as its answer is known: the entry was found, or the
    block or section that would hold it has been read completely.
    """

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path if path is not None else next((p for p in SEARCH_PATH if os.path.isfile(p)), None)
        self._text: Optional[str] = None
        self._pos = 0
        self._section = ""
        self._finished: Set[str] = set()
        self._vendor: Optional[int] = None
        self._class: Optional[int] = None
        self._subclass: Optional[int] = None
        self._vendors: Dict[int, str] = {}
        self._products: Dict[Tuple[int, int], str] = {}
        self._classes: Dict[int, str] = {}
        self._subclasses: Dict[Tuple[int, int], str] = {}
        self._protocols: Dict[Tuple[int, int, int], str] = {}
        #: Text spans of each vendor's product lines, parsed into _products on demand.
        self._blocks: Dict[int, List[Tuple[int, int]]] = {}
        self._block_start = 0

    # -- lookups -------------------------------------------------------------
    def vendor(self, vendor_id: int) -> Optional[str]:
        self._parse_until(lambda: vendor_id in self._vendors or "vendor" in self._finished)
        return self._vendors.get(vendor_id)

    def product(self, vendor_id: int, product_id: int) -> Optional[str]:
        # Until the vendor's block is closed (by the next entry) its products are not all known.
        self._parse_until(
            lambda: "vendor" in self._finished or (vendor_id in self._vendors and vendor_id != self._vendor)
        )
        self._parse_products(vendor_id)
        return self._products.get((vendor_id, product_id))

    def device_class(self, class_id: int) -> Optional[str]:
        self._parse_until(lambda: class_id in self._classes or "class" in self._finished)
        return self._classes.get(class_id)

    def subclass(self, class_id: int, subclass_id: int) -> Optional[str]:
        key = (class_id, subclass_id)
        self._parse_until(
            lambda: (
                key in self._subclasses
                or "class" in self._finished
                or (class_id in self._classes and class_id != self._class)
            )
        )
        return self._subclasses.get(key)

    def protocol(self, class_id: int, subclass_id: int, protocol_id: int) -> Optional[str]:
        key = (class_id, subclass_id, protocol_id)
        self._parse_until(
            lambda: (
                key in self._protocols
                or "class" in self._finished
                or (
                    (class_id, subclass_id) in self._subclasses
                    and (class_id, subclass_id) != (self._class, self._subclass)
                )
            )
        )
        return self._protocols.get(key)

    # -- the C tools' wording ----------------------------------------------------
    def product_line(self, vendor_id: int, product_id: int) -> str:
        """``Linux Foundation : Multifunction Composite Gadget (1d6b:0104)``."""
        return "%s : %s (%04x:%04x)" % (
            self.vendor(vendor_id) or "unknown vendor",
            self.product(vendor_id, product_id) or "unknown product",
            vendor_id,
            product_id,
        )

    def class_line(self, class_id: int, subclass_id: int, protocol_id: int) -> str:
        """``Mass Storage / SCSI / Bulk-Only (08/06/50)``, as ``usbip list -r`` prints it."""
        codes = "(%02x/%02x/%02x)" % (class_id, subclass_id, protocol_id)
        if class_id == subclass_id == protocol_id == 0:
            return "(Defined at Interface level) " + codes
        return "%s / %s / %s %s" % (
            self.device_class(class_id) or "unknown class",
            self.subclass(class_id, subclass_id) or "unknown subclass",
            self.protocol(class_id, subclass_id, protocol_id) or "unknown protocol",
            codes,
        )

    # -- parsing -----------------------------------------------------------------
    def _parse_until(self, done: Callable[[], bool]) -> None:
        if self._text is None:
            self._text = self._load()
        text = self._text
        while not done() and self._pos < len(text):
            if self._section in ("", "vendor"):
                # From one entry to the next: the lines between are the open vendor's products.
                match = _TOP_LEVEL.search(text, self._pos)
                self._close_block(match.start() if match else len(text))
                if match is None:
                    self._pos = len(text)
                    break
                self._pos = self._block_start = match.end() + 1
                self._parse_line(match.group(0).rstrip("\r"))
                continue
            end = text.find("\n", self._pos)
            if end < 0:
                end = len(text)
            self._parse_line(text[self._pos : end].rstrip("\r"))
            self._pos = end + 1
        if self._pos >= len(text):
            self._close_block(len(text))
            self._finished.update(("vendor", "class"))

    def _close_block(self, end: int) -> None:
        if self._section == "vendor" and self._vendor is not None:
            self._blocks.setdefault(self._vendor, []).append((self._block_start, end))
            self._vendor = None

    def _parse_products(self, vendor_id: int) -> None:
        """The product lines of the vendor's blocks read so far (each block once)."""
        for start, end in self._blocks.pop(vendor_id, ()):
            for line in self._text[start:end].split("\n"):
                match = _CHILD.fullmatch(line.rstrip("\r"))
                if match:
                    self._products.setdefault((vendor_id, int(match.group(1), 16)), match.group(2))

    def _load(self) -> str:
        if self.path is None:
            return ""
        try:
            with open(self.path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _parse_line(self, line: str) -> None:
        if not line or line.startswith("#"):
            return
        if line.startswith("\t"):
            self._parse_child(line)
            return
        match = _VENDOR.fullmatch(line)
        if match:
            self._enter("vendor")
            self._vendor = int(match.group(1), 16)
            self._vendors.setdefault(self._vendor, match.group(2))
            return
        match = _CLASS.fullmatch(line)
        if match:
            self._enter("class")
            self._class = int(match.group(1), 16)
            self._classes.setdefault(self._class, match.group(2))
            return
        self._enter("other")  # audio terminals, HID usages, languages...

    def _parse_child(self, line: str) -> None:
        match = _CHILD.fullmatch(line)
        if match:
            number = int(match.group(1), 16)
            if self._vendor is not None:
                self._products.setdefault((self._vendor, number), match.group(2))
            elif self._class is not None:
                self._subclass = number
                self._subclasses.setdefault((self._class, number), match.group(2))
            return
        match = _GRANDCHILD.fullmatch(line)
        if match and self._class is not None and self._subclass is not None:
            number = int(match.group(1), 16)
            self._protocols.setdefault((self._class, self._subclass, number), match.group(2))

    def _enter(self, section: str) -> None:
        """A top-level line closes the previous entry's block, and perhaps its section."""
        if self._section and self._section != section:
            self._finished.add(self._section)
        self._section = section
        self._vendor = self._class = self._subclass = None


@functools.lru_cache(maxsize=None)
def default() -> UsbIds:
    """The system's database, shared by every caller of the process."""
    return UsbIds()
