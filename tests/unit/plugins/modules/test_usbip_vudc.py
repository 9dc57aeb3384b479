# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbip_vudc: the declarative gadget against a fake configfs that refuses wrong orders."""

from __future__ import annotations

import pytest
from ansible_collections.usbip.usbip.plugins.modules import usbip_vudc
from fake_configfs import GADGETS, FakeConfigfs
from fake_usb import GVUDC_DESC

from usbip.sysfs import gadget

KEYBOARD = "05010906a101050719e029e71500250175019508810295017508810395058102c0"
LOADED = ["/sys/module/libcomposite", "/sys/module/usb_f_mass_storage", "/sys/module/usb_f_acm",
          "/sys/module/usb_f_hid", "/sys/bus/platform/drivers/usbip-vudc", "/sys/module/dummy_hcd"]


@pytest.fixture
def fake(tmp_path):
    f = FakeConfigfs(tmp_path / "root")
    for path in LOADED:
        f.host(path).mkdir(parents=True, exist_ok=True)
    f.file("/sys/devices/platform/usbip-vudc.0/usbip_status", "1\n")
    f.host("/sys/devices/platform/usbip-vudc.0/dev_desc").write_bytes(GVUDC_DESC)
    return f


def args(image, **changes):
    base = {"name": "g1", "udc": "usbip-vudc.0", "id_vendor": "1209", "id_product": "0x0a01",
            "manufacturer": "usbip.usbip", "product": "unit disk", "serial": "U-1",
            "functions": [{"type": "mass_storage", "file": image, "removable": True}, {"type": "acm"}]}
    base.update(changes)
    return base


def run(run_module, fake, module_args, **kw):
    return run_module(usbip_vudc, module_args, fake.sysfs, **kw)


def test_check_mode_changes_nothing_and_shows_the_gadget_to_be(run_module, fake, image):
    before = fake.snapshot()
    result = run(run_module, fake, args(image), check_mode=True, diff=True)
    assert result["changed"] is True and fake.snapshot() == before
    ops = [c["op"] for c in result["sysfs_changes"]]
    assert ops[0] == "mkdir" and result["sysfs_changes"][0]["path"] == GADGETS + "/g1"
    assert result["sysfs_changes"][-1] == {"op": "write", "path": GADGETS + "/g1/UDC", "value": "usbip-vudc.0"}
    assert result["diff"]["before"] == "(absent)\n"
    assert result["diff"]["after"] == (
        "name: g1\nudc: usbip-vudc.0\nidVendor: 0x1209\nidProduct: 0x0a01\nmanufacturer: usbip.usbip\n"
        "product: unit disk\nserialnumber: U-1\nfunctions:\n  acm.0: {}\n  mass_storage.0:\n"
        "    lun.0/file: %s\n    lun.0/removable: true\n" % image)
    assert "device" not in result


def test_create_converge_update_and_remove(run_module, fake, image):
    first = run(run_module, fake, args(image), diff=True)
    assert first["changed"] is True
    assert fake.read(GADGETS + "/g1/UDC") == "usbip-vudc.0\n"
    assert fake.read(GADGETS + "/g1/functions/mass_storage.0/lun.0/file") == image + "\n"
    assert first["gadget"]["functions"] == {"acm.0": {}, "mass_storage.0": {"lun.0/file": image,
                                                                            "lun.0/removable": True}}
    assert first["device"] == {"busid": "usbip-vudc.0", "usbid": "1d6b:0104", "id_vendor": "1d6b",
                               "id_product": "0104", "usbip_status": "available"}
    # The check-mode prediction is what the real run produced.
    check = run(run_module, fake, args(image), check_mode=True, diff=True)
    assert check["changed"] is False and check["sysfs_changes"] == []

    again = run(run_module, fake, args(image), diff=True)
    assert again["changed"] is False and run_module.journal == []
    assert again["diff"]["before"] == again["diff"]["after"] == first["diff"]["after"]

    renamed = run(run_module, fake, args(image, product="renamed", functions=[{"type": "acm"}]), diff=True)
    assert renamed["changed"] is True
    assert "product: unit disk\n" in renamed["diff"]["before"] and "product: renamed\n" in renamed["diff"]["after"]
    assert "mass_storage.0" in renamed["diff"]["before"] and "mass_storage.0" not in renamed["diff"]["after"]
    assert not fake.host(GADGETS + "/g1/functions/mass_storage.0").exists()

    snapshot = fake.snapshot()
    check_absent = run(run_module, fake, {"name": "g1", "state": "absent"}, check_mode=True, diff=True)
    assert check_absent["changed"] is True and fake.snapshot() == snapshot
    assert check_absent["diff"]["after"] == "(absent)\n" and "udc: usbip-vudc.0" in check_absent["diff"]["before"]

    gone = run(run_module, fake, {"name": "g1", "state": "absent"})
    assert gone["changed"] is True and not fake.host(GADGETS + "/g1").exists()
    assert fake.read("/sys/class/udc/usbip-vudc.0/function") == ""
    assert run(run_module, fake, {"name": "g1", "state": "absent"})["changed"] is False


def test_a_hid_function_with_a_report_descriptor(run_module, fake, image):
    hid = {"type": "hid", "protocol": 1, "subclass": 1, "report_length": 8, "report_desc": KEYBOARD}
    result = run(run_module, fake, args(image, udc="dummy_udc.0", functions=[hid]), diff=True)
    assert result["changed"] is True and "device" not in result
    assert result["gadget"]["functions"]["hid.0"]["report_desc"] == KEYBOARD
    assert "    report_desc: %s\n" % KEYBOARD in result["diff"]["after"]
    again = run(run_module, fake, args(image, udc="dummy_udc.0", functions=[hid]))
    assert again["changed"] is False


@pytest.mark.parametrize("changes, error", [
    ({"name": "../x"}, "invalid gadget name '../x'"),
    ({"id_vendor": "12"}, "invalid id_vendor '12'"),
    ({"bcd_device": "0x0a00"}, "not binary-coded decimal"),
    ({"functions": [{"type": "acm", "file": "/x"}]}, "option file is only valid for mass_storage functions, not acm"),
    ({"functions": [{"type": "mass_storage", "file": "/no/such/file"}]}, "backing file /no/such/file of"),
    ({"functions": [{"type": "mass_storage", "file": "rel.img"}]}, "must be an absolute path"),
    ({"functions": [{"type": "hid", "report_desc": "zz"}]}, "invalid report_desc of hid.0"),
    ({"functions": [{"type": "../acm"}]}, "value of type must be one of: acm, ecm, eem, ffs, geth, gser, hid, "),
    ({"functions": [{"type": "foo"}]}, "got: foo found in functions"),
    ({"functions": [{"type": "usb_f_acm"}]}, "got: usb_f_acm found in functions"),
    ({"functions": [{"type": "acm", "instance": "a/b"}]}, "invalid instance 'a/b'"),
    ({"udc": "usbip-vudc.9"}, "no UDC named usbip-vudc.9 (available: dummy_udc.0, usbip-vudc.0)"),
    ({"udc": "../x"}, "invalid UDC name '../x'"),
    ({"udc": "usbip-vudc.0/../x"}, "invalid UDC name 'usbip-vudc.0/../x'"),
    ({"udc": "usbip-vudc..0"}, "invalid UDC name 'usbip-vudc..0'"),
    ({"udc": "udc\n"}, "invalid UDC name 'udc\\n'"),
    ({"udc": "u" * 65}, "invalid UDC name"),
    ({"udc": "fe980000.usb"}, "no UDC named fe980000.usb (available: dummy_udc.0, usbip-vudc.0)"),
])
def test_bad_parameters_fail_and_write_nothing(run_module, fake, image, changes, error):
    before = fake.snapshot()
    for check_mode in (False, True):
        result = run(run_module, fake, args(image, **changes), check_mode=check_mode)
        assert result["failed"] and error in result["msg"], result["msg"]
        assert not result.get("changed") and run_module.journal == []
    assert fake.snapshot() == before


@pytest.fixture
def bare(fake):
    """The fake without any gadget module loaded: a bad task must fail before it loads one."""
    for path in LOADED:
        fake.host(path).rmdir()
    return fake


@pytest.mark.parametrize("changes, error", [
    ({"udc": "../x"}, "invalid UDC name '../x'"),
    ({"udc": "fe980000.usb"}, "no UDC named fe980000.usb (available: dummy_udc.0, usbip-vudc.0)"),
    ({"functions": [{"type": "foo"}]}, "got: foo found in functions"),
    ({"bcd_device": "0x0a00"}, "not binary-coded decimal"),
    ({"name": "../g"}, "invalid gadget name '../g'"),
    ({"manufacturer": "two\nlines"}, "invalid manufacturer"),
])
def test_bad_parameters_fail_before_any_module_is_loaded(run_module, bare, image, changes, error):
    before = bare.snapshot()
    results = [run(run_module, bare, args(image, **changes), check_mode=check_mode) for check_mode in (True, False)]
    assert run_module.commands == run_module.probes == []
    for result in results:
        assert result["failed"] and error in result["msg"], result["msg"]
        # The argument spec's refusals come before any run, so without a run's keys.
        assert result.get("changed", False) is False and not result.get("kernel_modules")
        assert not result.get("sysfs_changes")
    assert results[0]["msg"] == results[1]["msg"] and bare.snapshot() == before


def test_a_udc_is_checked_before_the_modules_unless_their_load_makes_it(run_module, bare, image):
    """usbip-vudc.0 exists in the fake; usbip-vudc.5 would be made by loading usbip-vudc with num=6."""
    check = run(run_module, bare, args(image, udc="usbip-vudc.5"), check_mode=True)
    assert check["changed"] is True and check["kernel_modules"][-1] == "usbip-vudc"
    assert run_module.probes[-1] == ["/sbin/modprobe", "-n", "usbip-vudc", "num=6"]
    bare.host("/sys/bus/platform/drivers/usbip-vudc").mkdir(parents=True)  # loaded already: no load makes it
    for check_mode in (True, False):
        result = run(run_module, bare, args(image, udc="usbip-vudc.5"), check_mode=check_mode)
        assert result["failed"] and result["msg"].startswith("no UDC named usbip-vudc.5 (available: ")
        assert result["kernel_modules"] == [] and result["changed"] is False
    without_loading = run(run_module, bare, args(image, udc="usbip-vudc.5", load_kernel_modules=False))
    assert without_loading["failed"] and without_loading["msg"].startswith("no UDC named usbip-vudc.5")


def test_a_missing_function_module_fails_check_mode_as_the_real_run(run_module, bare, image):
    run_module.missing = {"usbfunc:acm"}
    check = run(run_module, bare, args(image), check_mode=True)
    real = run(run_module, bare, args(image))
    assert check["failed"] and real["failed"] and check["msg"] == real["msg"]
    assert check["msg"].startswith("modprobe usb_f_acm failed (rc 1): modprobe: FATAL: Module usbfunc:acm not found")
    # The modules before it: found in check mode, loaded in the real run; none after it.
    assert check["kernel_modules"] == real["kernel_modules"] == ["usb_f_mass_storage"]
    assert check["changed"] is False and real["changed"] is True and check["sysfs_changes"] == []


def test_check_mode_changes_come_with_what_would_change(run_module, fake, image):
    """changed: true in check mode always lists the planned writes or loads, and the diff shows them."""
    def check(module_args):
        result = run(run_module, fake, module_args, check_mode=True, diff=True)
        assert not result.get("failed"), result["msg"]
        if result["changed"]:
            assert result["sysfs_changes"] or result["kernel_modules"]
            assert result["diff"]["before"] != result["diff"]["after"] or result["kernel_modules"]
        else:
            assert result["sysfs_changes"] == result["kernel_modules"] == []
            assert result["diff"]["before"] == result["diff"]["after"]
        return result

    assert check(args(image))["changed"] is True
    run(run_module, fake, args(image))
    assert check(args(image))["changed"] is False
    assert check(args(image, product="renamed"))["sysfs_changes"][-2:] == [
        {"op": "write", "path": GADGETS + "/g1/strings/0x409/product", "value": "renamed"},
        {"op": "write", "path": GADGETS + "/g1/UDC", "value": "usbip-vudc.0"}]
    assert check(args(image, udc="dummy_udc.0"))["sysfs_changes"] == [
        {"op": "write", "path": GADGETS + "/g1/UDC", "value": "\n"},
        {"op": "write", "path": GADGETS + "/g1/UDC", "value": "dummy_udc.0"}]
    assert check(args(image, functions=[{"type": "acm"}, {"type": "gser"}]))["changed"] is True
    assert check({"name": "g1", "state": "absent"})["sysfs_changes"][-1] == {
        "op": "rmdir", "path": GADGETS + "/g1", "value": ""}
    assert check({"name": "g2", "state": "absent"})["changed"] is False


def test_absent_refuses_a_bad_udc_too(run_module, fake):
    result = run(run_module, fake, {"name": "g1", "state": "absent", "udc": "../x"}, check_mode=True)
    assert result["failed"] and result["msg"] == "invalid UDC name '../x'"


def test_the_function_types_are_gadget_py_table():
    """The documented choices, the argument spec's and the types sysfs/gadget.py checks are one list."""
    import yaml

    doc = yaml.safe_load(usbip_vudc.DOCUMENTATION)
    documented = doc["options"]["functions"]["suboptions"]["type"]["choices"]
    assert documented == sorted(gadget.FUNCTION_MODULES)
    assert set(gadget.FUNCTION_ATTRS) <= set(documented)


def test_required_for_present(run_module, fake):
    result = run(run_module, fake, {"name": "g1"})
    assert result["failed"] and "state is present but all of the following are missing: udc" in result["msg"]


def test_a_udc_taken_by_another_gadget_is_refused(run_module, fake, image):
    run(run_module, fake, args(image))
    result = run(run_module, fake, args(image, name="g2"))
    assert result["failed"] and result["msg"] == "UDC usbip-vudc.0 is already used by gadget g1"


def test_modules_are_loaded_for_the_functions_and_the_udc(run_module, fake, image):
    for path in ("/sys/module/usb_f_mass_storage", "/sys/bus/platform/drivers/usbip-vudc"):
        fake.host(path).rmdir()
    check = run(run_module, fake, args(image, udc="usbip-vudc.3"), check_mode=True, diff=True)
    assert check["changed"] is True and check["kernel_modules"] == ["usb_f_mass_storage", "usbip-vudc"]
    assert run_module.commands == [] and check["diff"]["before"] == "(absent)\n"
    assert run_module.probes == [["/sbin/modprobe", "-n", "usbfunc:mass_storage"],
                                 ["/sbin/modprobe", "-n", "usbip-vudc", "num=4"]]
    assert "udc: usbip-vudc.3" in check["diff"]["after"]
    # The plan is the driver's: the whole gadget, bound to the UDC the load would make.
    assert check["sysfs_changes"][0] == {"op": "mkdir", "path": GADGETS + "/g1", "value": ""}
    assert check["sysfs_changes"][-1] == {"op": "write", "path": GADGETS + "/g1/UDC", "value": "usbip-vudc.3"}
    result = run(run_module, fake, args(image, udc="usbip-vudc.3"))
    assert run_module.commands == [["/sbin/modprobe", "usbfunc:mass_storage"],
                                   ["/sbin/modprobe", "usbip-vudc", "num=4"]]
    # The fake kernel has no usbip-vudc.3 even after that: a clear failure, the loads reported.
    assert result["failed"] and result["changed"] is True and "no UDC named usbip-vudc.3" in result["msg"]


def test_absent_without_configfs_is_nothing_to_do(run_module, tmp_path):
    class Bare:
        def sysfs(self, dry_run=False):
            from usbip.sysfs.fs import Sysfs
            return Sysfs(str(tmp_path), dry_run)
    result = run_module(usbip_vudc, {"name": "g1", "state": "absent"}, Bare().sysfs)
    assert result["changed"] is False and result["gadget"] is None


def test_the_function_options_are_gadget_py_attributes():
    """The options usbip_vudc offers are the attributes sysfs/gadget.py knows, each on the types that have it."""
    assert [(option, attr, kinds) for option, attr, kinds, _type in usbip_vudc.FUNCTION_OPTIONS] == [
        ("stall", "stall", ("mass_storage",)), ("file", "lun.0/file", ("mass_storage",)),
        ("ro", "lun.0/ro", ("mass_storage",)), ("removable", "lun.0/removable", ("mass_storage",)),
        ("cdrom", "lun.0/cdrom", ("mass_storage",)), ("nofua", "lun.0/nofua", ("mass_storage",)),
        ("protocol", "protocol", ("hid",)), ("subclass", "subclass", ("hid",)),
        ("report_length", "report_length", ("hid",)), ("report_desc", "report_desc", ("hid",))]
