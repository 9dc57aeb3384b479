# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel modules the drivers declare, and a dry run that reads past a load it only plans."""

from __future__ import annotations

from usbip.sysfs import gadget, host, vhci, vudc
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.kmod import AfterLoad, KernelModule


def test_each_driver_declares_its_module_by_the_path_it_uses():
    assert host.KERNEL_MODULE == KernelModule("usbip-host", (host.DRIVER,))
    assert vhci.KERNEL_MODULE == KernelModule("vhci-hcd", (vhci.VHCI,))
    assert gadget.KERNEL_MODULE == KernelModule("libcomposite", (gadget.GADGETS, "/sys/module/libcomposite"))
    module = vudc.kernel_module(2)
    assert (module.name, module.probes, module.args) == ("usbip-vudc", (vudc.DRIVER,), ("num=2",))
    assert module.creates == ("/sys/class/udc/usbip-vudc.0", "/sys/class/udc/usbip-vudc.1")


def test_modprobe_arguments():
    assert host.KERNEL_MODULE.modprobe_args() == ["usbip-host"]
    assert vudc.kernel_module(4).modprobe_args() == ["usbip-vudc", "num=4"]
    # The dry run is the same command with -n: it resolves what the load would, and loads nothing.
    assert vudc.kernel_module(4).modprobe_args(dry_run=True) == ["-n", "usbip-vudc", "num=4"]
    assert gadget.function_module("acm").modprobe_args(dry_run=True) == ["-n", "usbfunc:acm"]
    assert gadget.function_module("mass_storage").modprobe_args() == ["usbfunc:mass_storage"]
    assert gadget.function_module("gser").name == "usb_f_serial"
    assert gadget.function_module("ffs").probes == ("/sys/module/usb_f_fs",)
    assert gadget.function_module("geth").name == "usb_f_ecm_subset"
    assert gadget.function_module("geth").modprobe_args() == ["usbfunc:geth"]


def test_the_module_of_a_udc():
    assert gadget.udc_module("usbip-vudc.3") == vudc.kernel_module(4)
    dummy = gadget.udc_module("dummy_udc.1")
    assert dummy.name == "dummy_hcd" and dummy.args == ("num=2",)
    assert dummy.probes == ("/sys/module/dummy_hcd", "/sys/devices/platform/dummy_udc.0")
    assert gadget.udc_module("fe980000.usb") is None and gadget.udc_module(None) is None


def test_loaded_is_any_probe(tmp_path):
    sysfs = Sysfs(str(tmp_path))
    assert not gadget.KERNEL_MODULE.loaded(sysfs)
    (tmp_path / "sys/module/libcomposite").mkdir(parents=True)
    assert gadget.KERNEL_MODULE.loaded(sysfs)


def test_after_load_reads_the_paths_a_load_makes_and_journals_into_the_real_sysfs(tmp_path):
    (tmp_path / "sys/class/udc/dummy_udc.0").mkdir(parents=True)
    sysfs = Sysfs(str(tmp_path), dry_run=True)
    planned = AfterLoad(sysfs)
    assert not planned.isdir(vudc.DRIVER) and planned.listdir("/sys/class/udc") == ["dummy_udc.0"]
    planned.assume_loaded([vudc.kernel_module(2)])
    assert planned.isdir(vudc.DRIVER) and planned.exists("/sys/bus/platform/drivers")
    assert planned.listdir("/sys/class/udc") == ["dummy_udc.0", "usbip-vudc.0", "usbip-vudc.1"]
    planned.write("/sys/class/udc/usbip-vudc.0/x", "1")
    assert sysfs.journal == planned.journal and len(sysfs.journal) == 1
    assert not (tmp_path / "sys/bus").exists()
