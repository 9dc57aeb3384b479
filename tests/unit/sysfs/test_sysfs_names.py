# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from fake_names import USB_IDS

from usbip.sysfs import names
from usbip.sysfs.names import UsbIds


@pytest.fixture
def ids(tmp_path):
    path = tmp_path / "usb.ids"
    path.write_text(USB_IDS, encoding="utf-8")
    return UsbIds(str(path))


def test_vendor_and_product(ids):
    assert ids.vendor(0x1D6B) == "Linux Foundation"
    assert ids.product(0x1D6B, 0x0104) == "Multifunction Composite Gadget"
    assert ids.product(0xABCD, 0x1234) == "Lost product"  # CRLF line ending
    assert ids.vendor(0xFFEE) == "FNK Tech"


def test_misses(ids):
    assert ids.vendor(0x1234) is None
    assert ids.product(0x1D6B, 0x9999) is None
    assert ids.product(0x4242, 0x0001) is None
    assert ids.product(0x1D6B, 0x0000) is None  # the interface line under 0104 is no product


def test_product_line_has_the_c_tools_wording_and_fallbacks(ids):
    assert ids.product_line(0x1209, 0x0001) == "Generic : pid.codes Test PID (1209:0001)"
    assert ids.product_line(0x1209, 0x0002) == "Generic : unknown product (1209:0002)"
    assert ids.product_line(0x4242, 0xBEEF) == "unknown vendor : unknown product (4242:beef)"


def test_classes(ids):
    assert ids.device_class(0x08) == "Mass Storage"
    assert ids.subclass(0x08, 0x06) == "SCSI"
    assert ids.protocol(0x08, 0x06, 0x50) == "Bulk-Only"
    assert ids.protocol(0x09, 0x00, 0x01) == "Single TT"
    assert ids.device_class(0x0A) == "CDC Data"
    assert ids.subclass(0x01, 0x01) is None
    assert ids.protocol(0x02, 0x02, 0x77) is None


def test_class_line(ids):
    assert ids.class_line(0x08, 0x06, 0x50) == "Mass Storage / SCSI / Bulk-Only (08/06/50)"
    assert ids.class_line(0, 0, 0) == "(Defined at Interface level) (00/00/00)"
    assert ids.class_line(0xFF, 0x01, 0x02) == "unknown class / unknown subclass / unknown protocol (ff/01/02)"


def test_sections_after_the_classes_are_not_mistaken_for_names(ids):
    assert ids.vendor(0x0100) is None and ids.vendor(0x0001) is None
    assert ids.subclass(0x0A, 0x01) is None


def test_parsing_stops_as_soon_as_the_answer_is_known(ids):
    assert ids.vendor(0x0781) == "SanDisk Corp."
    assert list(ids._vendors) == [0x0781]
    assert ids.product(0x0781, 0x9999) is None  # decided at the next vendor line
    assert list(ids._vendors) == [0x0781, 0x05E3]
    assert ids._classes == {}


def test_missing_file_gives_only_fallbacks(tmp_path):
    ids = UsbIds(str(tmp_path / "absent"))
    assert ids.product_line(0x1D6B, 0x0104) == "unknown vendor : unknown product (1d6b:0104)"
    assert ids.class_line(8, 6, 0x50) == "unknown class / unknown subclass / unknown protocol (08/06/50)"


def test_database_is_found_on_the_search_path(tmp_path, monkeypatch):
    path = tmp_path / "usb.ids"
    path.write_text(USB_IDS, encoding="utf-8")
    monkeypatch.setattr(names, "SEARCH_PATH", (str(tmp_path / "absent"), str(path)))
    assert UsbIds().path == str(path)
    monkeypatch.setattr(names, "SEARCH_PATH", ())
    assert UsbIds().vendor(0x1D6B) is None


def test_default_database_is_shared():
    assert names.default() is names.default()
