# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Configfs gadgets: exact, ordered journals against a fake that refuses wrong orders."""

from __future__ import annotations

import os

import pytest
from fake_configfs import FakeConfigfs
from fake_usb import capture_tree, load_capture

from usbip.errors import InvalidArgument
from usbip.sysfs import gadget
from usbip.sysfs.errors import DeviceBusy, DeviceNotFound, DriverNotLoaded
from usbip.sysfs.fs import Change, Sysfs
from usbip.sysfs.gadget import GadgetDriver, GadgetFunction, GadgetSpec, Udc

GADGETS = "/sys/kernel/config/usb_gadget"
G = GADGETS + "/gvudc"
C1 = G + "/configs/c.1"
MS = G + "/functions/mass_storage.0"
VUDC = "usbip-vudc.0"
# A boot-protocol keyboard's report descriptor, truncated: binary with bytes above 0x7f.
REPORT = bytes.fromhex("05010906a101050719e029e71500250175019508810295017508810395058102c0")


@pytest.fixture
def fake(tmp_path):
    return FakeConfigfs(tmp_path)


def gvudc(image, **changes):
    spec = GadgetSpec(
        "gvudc", 0x1D6B, 0x0104, bcd_usb=0x0200, manufacturer="vmlab", product="gadget-gvudc",
        serialnumber="SER-gvudc", configuration="cfg", max_power=120,
        functions=(GadgetFunction("mass_storage.0", {"lun.0/file": image, "lun.0/ro": False}),),
    )
    return GadgetSpec(**{**spec.__dict__, **changes})


def w(path, value):
    return Change("write", path, value)


def created(image):
    return [
        Change("mkdir", G),
        w(G + "/idVendor", "0x1d6b"), w(G + "/idProduct", "0x0104"), w(G + "/bcdUSB", "0x0200"),
        Change("mkdir", G + "/strings/0x409"),
        w(G + "/strings/0x409/manufacturer", "vmlab"), w(G + "/strings/0x409/product", "gadget-gvudc"),
        w(G + "/strings/0x409/serialnumber", "SER-gvudc"),
        Change("mkdir", C1), w(C1 + "/MaxPower", "120"),
        Change("mkdir", C1 + "/strings/0x409"), w(C1 + "/strings/0x409/configuration", "cfg"),
        Change("mkdir", MS), w(MS + "/lun.0/ro", "0"), w(MS + "/lun.0/file", image),
        Change("symlink", C1 + "/mass_storage.0", MS),
        w(G + "/UDC", VUDC),
    ]


# -- ensure ------------------------------------------------------------------------
def test_ensure_creates_links_and_binds_in_order(fake, image):
    gadgets = GadgetDriver(fake.sysfs())
    assert gadgets.ensure(gvudc(image), VUDC) == created(image)
    assert fake.read(G + "/idVendor") == "0x1d6b\n"
    assert fake.read(MS + "/lun.0/file") == image + "\n"
    assert gadgets.bound_udc("gvudc") == VUDC
    assert Udc(VUDC, "configured", "gvudc") in gadgets.udcs()


def test_second_ensure_changes_nothing(fake, image):
    GadgetDriver(fake.sysfs()).ensure(gvudc(image), VUDC)
    again = GadgetDriver(fake.sysfs())
    assert again.ensure(gvudc(image), VUDC) == []
    assert again.sysfs.journal == []


def test_dry_run_journals_the_same_and_changes_nothing(fake, image):
    before = fake.snapshot()
    check = GadgetDriver(fake.sysfs(dry_run=True))
    assert check.ensure(gvudc(image), VUDC) == created(image)
    assert fake.snapshot() == before


def test_dry_run_of_a_change_to_a_bound_gadget(fake, image):
    GadgetDriver(fake.sysfs()).ensure(gvudc(image), VUDC)
    before = fake.snapshot()
    changes = GadgetDriver(fake.sysfs(dry_run=True)).ensure(gvudc(image, product="renamed"), VUDC)
    assert changes == [w(G + "/UDC", "\n"), w(G + "/strings/0x409/product", "renamed"), w(G + "/UDC", VUDC)]
    assert fake.snapshot() == before


def test_read_gives_the_spec_shape_and_round_trips(fake, image):
    gadgets = GadgetDriver(fake.sysfs())
    gadgets.ensure(gvudc(image), VUDC)
    current = gadgets.read("gvudc")
    assert current == gvudc(image, bcd_device=0x0601, device_class=0, device_subclass=0, device_protocol=0,
                            functions=(GadgetFunction("mass_storage.0", {
                                "stall": False, "lun.0/file": image, "lun.0/ro": False, "lun.0/removable": True,
                                "lun.0/cdrom": False, "lun.0/nofua": False}),))
    assert gadgets.ensure(current, VUDC) == []
    assert gadgets.read("absent") is None


def test_a_change_to_a_bound_gadget_unbinds_and_rebinds(fake, image):
    GadgetDriver(fake.sysfs()).ensure(gvudc(image), VUDC)
    gadgets = GadgetDriver(fake.sysfs())
    assert gadgets.ensure(gvudc(image, id_product=0x0105, max_power=500), VUDC) == [
        w(G + "/UDC", "\n"), w(G + "/idProduct", "0x0105"), w(C1 + "/MaxPower", "500"), w(G + "/UDC", VUDC),
    ]
    assert fake.read(G + "/idProduct") == "0x0105\n"


def test_ro_of_an_open_lun_closes_and_reopens_its_file(fake, image):
    GadgetDriver(fake.sysfs()).ensure(gvudc(image), VUDC)
    ro = (GadgetFunction("mass_storage.0", {"lun.0/file": image, "lun.0/ro": True}),)
    assert GadgetDriver(fake.sysfs()).ensure(gvudc(image, functions=ro), VUDC) == [
        w(G + "/UDC", "\n"),
        Change("unlink", C1 + "/mass_storage.0"),
        w(MS + "/lun.0/file", "\n"), w(MS + "/lun.0/ro", "1"), w(MS + "/lun.0/file", image),
        Change("symlink", C1 + "/mass_storage.0", MS),
        w(G + "/UDC", VUDC),
    ]
    assert fake.read(MS + "/lun.0/ro") == "1\n"


def test_hid_attributes_change_only_while_unlinked(fake, image):
    hid = GadgetFunction("hid.usb0", {"protocol": 1, "subclass": 1, "report_length": 8, "report_desc": REPORT})
    HID = G + "/functions/hid.usb0"
    gadgets = GadgetDriver(fake.sysfs())
    changes = gadgets.ensure(gvudc(image, functions=(hid,)), "dummy_udc.0")
    assert [c for c in changes if c.path.startswith(HID)] == [
        Change("mkdir", HID), w(HID + "/protocol", "1"), w(HID + "/subclass", "1"), w(HID + "/report_length", "8"),
        w(HID + "/report_desc", REPORT.hex()),
    ]
    assert (fake.host(HID + "/report_desc")).read_bytes() == REPORT
    assert gadgets.read("gvudc").functions == (GadgetFunction("hid.usb0", {
        "protocol": 1, "subclass": 1, "report_length": 8, "report_desc": REPORT}),)
    changed = GadgetFunction("hid.usb0", {**hid.attrs, "protocol": 2})
    assert GadgetDriver(fake.sysfs()).ensure(gvudc(image, functions=(changed,)), "dummy_udc.0") == [
        w(G + "/UDC", "\n"), Change("unlink", C1 + "/hid.usb0"), w(HID + "/protocol", "2"),
        Change("symlink", C1 + "/hid.usb0", HID), w(G + "/UDC", "dummy_udc.0"),
    ]


def test_functions_left_out_of_the_spec_are_removed(fake, image):
    GadgetDriver(fake.sysfs()).ensure(gvudc(image), VUDC)
    acm = (GadgetFunction("acm.GS0"),)
    ACM = G + "/functions/acm.GS0"
    assert GadgetDriver(fake.sysfs()).ensure(gvudc(image, functions=acm), VUDC) == [
        w(G + "/UDC", "\n"),
        Change("unlink", C1 + "/mass_storage.0"), Change("rmdir", MS),
        Change("mkdir", ACM), Change("symlink", C1 + "/acm.GS0", ACM),
        w(G + "/UDC", VUDC),
    ]
    assert not fake.host(MS).exists()


def test_links_made_by_other_tools_are_recognised(fake, image):
    gadgets = GadgetDriver(fake.sysfs())
    gadgets.ensure(gvudc(image), None)
    os.rename(fake.host(C1 + "/mass_storage.0"), fake.host(C1 + "/f1"))
    assert GadgetDriver(fake.sysfs()).ensure(gvudc(image), None) == []


def test_moving_to_another_udc_and_unbinding(fake, image):
    GadgetDriver(fake.sysfs()).ensure(gvudc(image), VUDC)
    assert GadgetDriver(fake.sysfs()).ensure(gvudc(image), "dummy_udc.0") == [
        w(G + "/UDC", "\n"), w(G + "/UDC", "dummy_udc.0")]
    assert GadgetDriver(fake.sysfs()).ensure(gvudc(image), None) == [w(G + "/UDC", "\n")]
    assert {u.name: u.function for u in GadgetDriver(fake.sysfs()).udcs()} == {"dummy_udc.0": None, VUDC: None}


# -- remove ------------------------------------------------------------------------
def removed():
    return [
        w(G + "/UDC", "\n"),
        Change("unlink", C1 + "/mass_storage.0"),
        Change("rmdir", C1 + "/strings/0x409"), Change("rmdir", C1),
        Change("rmdir", MS),
        Change("rmdir", G + "/strings/0x409"),
        Change("rmdir", G),
    ]


def test_remove_in_configfs_order(fake, image):
    GadgetDriver(fake.sysfs()).ensure(gvudc(image), VUDC)
    gadgets = GadgetDriver(fake.sysfs())
    assert gadgets.remove("gvudc") == removed()
    assert not fake.host(G).exists()
    assert gadgets.names() == []
    assert Udc(VUDC, "not attached", None) in gadgets.udcs()
    assert gadgets.remove("gvudc") == []


def test_remove_in_dry_run_changes_nothing(fake, image):
    GadgetDriver(fake.sysfs()).ensure(gvudc(image), VUDC)
    before = fake.snapshot()
    assert GadgetDriver(fake.sysfs(dry_run=True)).remove("gvudc") == removed()
    assert fake.snapshot() == before


# -- refusals before any change ------------------------------------------------------
def test_configfs_not_mounted(tmp_path, image):
    with pytest.raises(DriverNotLoaded) as err:
        GadgetDriver(Sysfs(str(tmp_path))).ensure(gvudc(image), VUDC)
    assert err.value.hint == "modprobe libcomposite; mount -t configfs none /sys/kernel/config"


def test_unknown_udc(fake, image):
    gadgets = GadgetDriver(fake.sysfs())
    with pytest.raises(DeviceNotFound, match=r"no UDC named nope.0 \(available: dummy_udc.0, usbip-vudc.0\)"):
        gadgets.ensure(gvudc(image), "nope.0")
    assert gadgets.sysfs.journal == []


def test_udc_used_by_another_gadget(fake, image):
    GadgetDriver(fake.sysfs()).ensure(gvudc(image, name="other"), VUDC)
    gadgets = GadgetDriver(fake.sysfs())
    with pytest.raises(DeviceBusy, match="already used by gadget other"):
        gadgets.ensure(gvudc(image), VUDC)
    assert gadgets.sysfs.journal == []


@pytest.mark.parametrize("changes", [
    {"name": "../x"}, {"name": ""}, {"name": "a/b"}, {"id_vendor": 0x10000}, {"id_product": -1},
    {"bcd_usb": 0x020A}, {"bcd_device": "0x0100"}, {"device_class": 256}, {"product": "two\nlines"},
    {"manufacturer": "caf\u00e9"}, {"serialnumber": "x" * 127}, {"max_power": 2041},
    {"functions": (GadgetFunction("mass_storage"),)},
    {"functions": (GadgetFunction("../mass_storage.0"),)},
    {"functions": (GadgetFunction("acm.0"), GadgetFunction("acm.0"))},
    {"functions": (GadgetFunction("mass_storage.0", {"../../UDC": "x"}),)},
    {"functions": (GadgetFunction("mass_storage.0", {"lun.0/ro": "yes"}),)},
    {"functions": (GadgetFunction("hid.0", {"report_length": True}),)},
    {"functions": (GadgetFunction("hid.0", {"report_desc": "05 01"}),)},
    {"functions": (GadgetFunction("mass_storage.0", {"lun.0/file": 3}),)},
    {"functions": (GadgetFunction("foo.0"),)},  # no such function type: no module, configfs refuses the mkdir
    {"functions": (GadgetFunction("acm.0"), GadgetFunction("usb_f_acm.0"))},  # a module name is not a type
])
def test_bad_specs_are_refused_before_configfs_is_looked_at(tmp_path, image, changes):
    gadgets = GadgetDriver(Sysfs(str(tmp_path / "no-configfs")))
    with pytest.raises(InvalidArgument):
        gadgets.ensure(gvudc(image, **changes), VUDC)
    assert gadgets.sysfs.journal == []


@pytest.mark.parametrize("udc", ["", "../usbip-vudc.0", "a b", 0, "usbip-vudc..0", "a/b", "u\n", "x" * 65,
                                 b"usbip-vudc.0"])
def test_bad_udc_names(fake, image, udc):
    with pytest.raises(InvalidArgument):
        GadgetDriver(fake.sysfs()).ensure(gvudc(image), udc)
    with pytest.raises(InvalidArgument, match="invalid UDC name"):
        gadget.udc_name(udc)
    with pytest.raises(InvalidArgument):
        GadgetDriver(fake.sysfs()).check_udc(udc, "gvudc")


@pytest.mark.parametrize("udc", [VUDC, "dummy_udc.0", "fe980000.usb", "musb-hdrc.2.auto", "x" * 64])
def test_udc_names_as_the_kernel_lists_them(udc):
    assert gadget.udc_name(udc) == udc


def test_check_udc_before_any_change(fake, image):
    gadgets = GadgetDriver(fake.sysfs())
    gadgets.check_udc(VUDC, "gvudc")
    with pytest.raises(DeviceNotFound, match=r"no UDC named fe980000.usb \(available: dummy_udc.0, usbip-vudc.0\)"):
        gadgets.check_udc("fe980000.usb", "gvudc")
    GadgetDriver(fake.sysfs()).ensure(gvudc(image, name="other"), VUDC)
    with pytest.raises(DeviceBusy, match="UDC usbip-vudc.0 is already used by gadget other"):
        gadgets.check_udc(VUDC, "gvudc")
    gadgets.check_udc(VUDC, "other")
    assert gadgets.sysfs.journal == []


def test_checked_normalises_a_spec_without_configfs(image):
    spec = gvudc(image, functions=(GadgetFunction("mass_storage.0", {"lun.0/ro": 1}), GadgetFunction("gser.0")))
    assert gadget.checked(spec).functions == (GadgetFunction("mass_storage.0", {"lun.0/ro": True}),
                                              GadgetFunction("gser.0"))
    with pytest.raises(InvalidArgument, match=r"unknown function type 'foo' of foo.0 \(known: acm, ecm, "):
        gadget.checked(gvudc(image, functions=(GadgetFunction("foo.0"),)))


def test_every_function_type_with_attributes_has_a_module():
    assert set(gadget.FUNCTION_ATTRS) <= set(gadget.FUNCTION_MODULES)
    assert all(module.startswith("usb_f_") for module in gadget.FUNCTION_MODULES.values())


def test_a_function_module_is_the_table_s_and_nothing_is_guessed():
    """The table is the only source: a type outside it is refused, not guessed as usb_f_<type> (which checked
    specs never asked for, and which would only have failed at the load)."""
    for kind, name in gadget.FUNCTION_MODULES.items():
        module = gadget.function_module(kind)
        assert (module.name, module.probes, module.alias) == (name, ("/sys/module/" + name,), "usbfunc:" + kind)
    with pytest.raises(InvalidArgument, match=r"unknown function type 'foo' \(known: acm, ecm, "):
        gadget.function_module("foo")


def test_bool_attributes_accept_0_and_1(fake, image):
    spec = gvudc(image, functions=(GadgetFunction("mass_storage.0", {"lun.0/file": image, "lun.0/ro": "1"}),))
    changes = GadgetDriver(fake.sysfs()).ensure(spec, None)
    assert w(MS + "/lun.0/ro", "1") in changes


# -- the real kernel -----------------------------------------------------------------
LAB_GADGETS = {
    "gvudc": (VUDC, GadgetSpec("gvudc", 0x1D6B, 0x0104, bcd_usb=0x0200, manufacturer="vmlab",
                               product="gadget-gvudc", serialnumber="SER-gvudc", configuration="cfg",
                               functions=(GadgetFunction("mass_storage.0", {"lun.0/file": "/tmp/ms.img"}),))),
    "gdummy": ("dummy_udc.0", GadgetSpec("gdummy", 0x1209, 0x0001, bcd_usb=0x0200, manufacturer="vmlab",
                                         product="gadget-gdummy", serialnumber="SER-gdummy", configuration="cfg",
                                         functions=(GadgetFunction("acm.0"),))),
}


@pytest.mark.parametrize("name", sorted(LAB_GADGETS))
def test_the_captured_lab_gadgets_need_no_change(tmp_path, name):
    udc, spec = LAB_GADGETS[name]
    gadgets = GadgetDriver(capture_tree("01-loaded.json", tmp_path).sysfs(dry_run=True))
    assert gadgets.bound_udc(name) == udc
    assert gadgets.ensure(spec, udc) == []
    assert gadgets.ensure(gadgets.read(name), udc) == []


def test_the_fake_builds_what_the_kernel_showed(tmp_path, image):
    """The capture job's gadgets made through ensure on the fake, compared path by path."""
    fake = FakeConfigfs(tmp_path, udcs=("dummy_udc.0", VUDC, "usbip-vudc.1"))
    for udc, spec in LAB_GADGETS.values():
        functions = tuple(GadgetFunction(fn.name, {rel: image for rel in fn.attrs}) for fn in spec.functions)
        GadgetDriver(fake.sysfs()).ensure(GadgetSpec(**{**spec.__dict__, "functions": functions}), udc)
    real = {path: entry for path, entry in load_capture("01-loaded.json").items()
            if path.startswith(GADGETS + "/") and entry.get("errno") is None}
    ours = {path: value.replace(image, "/tmp/ms.img") for path, value in fake.snapshot().items()
            if path.startswith(GADGETS + "/")}
    assert sorted(ours) == sorted(real)
    for path, entry in real.items():
        if entry["type"] == "link":
            target = os.path.normpath(os.path.join(os.path.dirname(path), entry["target"]))
            assert ours[path] == "-> " + str(fake.host(target)), path
        elif entry["type"] == "file":
            assert ours[path] == entry.get("text", ""), path
