# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The private module_utils: a module run (check mode past unloaded modules), diffs, result rendering."""

from __future__ import annotations

from types import SimpleNamespace

from ansible_collections.usbip.usbip.plugins.module_utils import _usbip_module, _usbip_results
from fake_usb import standard_tree

from usbip.sysfs import host
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.kmod import AfterLoad
from usbip.sysfs.usb import UsbBus


def test_render_is_line_per_value():
    text = _usbip_module.render({"a": None, "b": True, "c": "x y", "d": " pad", "e": "k: v", "f": {},
                                 "g": {"h": 1}, "i": ["p", "q"], "j": [], "k": b"\x01\xff"})
    assert text == ("a: none\nb: true\nc: x y\nd: ' pad'\ne: 'k: v'\nf: {}\ng:\n  h: 1\ni:\n  - p\n  - q\nj: []\n"
                    "k: 01ff\n")


def test_diff_keeps_strings_and_renders_mappings():
    assert _usbip_module.diff("(absent)\n", {"a": 1}, "h") == {"before": "(absent)\n", "after": "a: 1\n",
                                                               "before_header": "h", "after_header": "h"}


def _context(monkeypatch, root, check_mode, **params):
    monkeypatch.setattr(_usbip_module, "new_sysfs", lambda dry_run: Sysfs(str(root), dry_run))
    module = SimpleNamespace(check_mode=check_mode, params=params)
    return _usbip_module.Context(module)


def test_check_mode_reads_a_module_it_would_load_as_loaded(monkeypatch, tmp_path):
    ctx = _context(monkeypatch, tmp_path, True)
    assert not ctx.sysfs.isdir(host.DRIVER)
    assert ctx.load_kernel_modules([host.KERNEL_MODULE]) == ["usbip-host"]
    assert ctx.kernel_modules == ["usbip-host"] and ctx.sysfs.isdir(host.DRIVER)
    assert "usbip-host" in ctx.sysfs.listdir("/sys/bus/usb/drivers")
    assert not (tmp_path / "sys").exists() and ctx.changes() == []


def test_without_load_kernel_modules_nothing_is_assumed(monkeypatch, tmp_path):
    ctx = _context(monkeypatch, tmp_path, True, load_kernel_modules=False)
    assert ctx.load_kernel_modules([host.KERNEL_MODULE]) == []
    assert not ctx.sysfs.isdir(host.DRIVER)


def test_a_real_run_reads_the_kernel_as_it_is(monkeypatch, tmp_path):
    ctx = _context(monkeypatch, tmp_path, False)
    assert isinstance(ctx.sysfs, Sysfs) and not isinstance(ctx.sysfs, AfterLoad)


def test_every_device_result_starts_with_the_same_identity(tmp_path):
    dev = UsbBus(standard_tree(tmp_path).sysfs()).describe("18-1.4")
    local = _usbip_results.local_device_info(dev)
    remote = _usbip_results.remote_device_info(dev.device)
    identity = ["busid", "id_vendor", "id_product", "usbid", "vendor_name", "product_name"]
    assert list(local)[:6] == list(remote)[:6] == identity
    assert local["busid"] == "18-1.4" and local["id_vendor"] == "0781" and local["usbid"] == "0781:5567"
    assert {key: local[key] for key in identity} == {key: remote[key] for key in identity}
