# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbip_bind: argument handling, device selection, check mode, diff, kernel module loading."""

from __future__ import annotations

import pytest
from ansible_collections.usbip.usbip.plugins.module_utils import _usbip_module
from ansible_collections.usbip.usbip.plugins.module_utils._usbip_module import MODPROBE_HINT
from ansible_collections.usbip.usbip.plugins.modules import usbip_bind
from fake_usb import ACM, BAD_BUSIDS, BIND_17_1, DEVICES, DRIVERS, HOST, UNBIND_17_1, XHCI, FakeSysfs

from usbip.sysfs.fs import Sysfs

BEFORE = "driver: usb\nusbip_host: false\nusbip_status: none\n"
AFTER = "driver: usbip-host\nusbip_host: true\nusbip_status: available\n"


class KernelFake(FakeSysfs):
    """Plays usbip-host's part after bind, unbind and rebind writes."""

    def __init__(self, tree, dry_run):
        super().__init__(tree.root, tree.errors, dry_run)
        self.tree = tree

    def write(self, path, value):
        super().write(path, value)
        if self.dry_run:
            return
        if path == HOST + "/bind":
            self.tree.kernel_host_bind(value)
        elif path == HOST + "/rebind":
            self.tree.kernel_host_unbind(value, "usb", ACM)


@pytest.fixture
def kernel(tree):
    return lambda dry_run: KernelFake(tree, dry_run)


def run(run_module, tree, args, **kw):
    return run_module(usbip_bind, args, tree.sysfs, **kw)


# -- arguments ------------------------------------------------------------------------
@pytest.mark.parametrize("busid", BAD_BUSIDS)
def test_a_bad_busid_fails_before_any_sysfs_access(run_module, tree, busid):
    result = run(run_module, tree, {"busid": busid})
    assert result["failed"] and "busid" in result["msg"]
    assert result["changed"] is False
    assert run_module.sysfs.touched == [] and run_module.journal == []


def test_busid_and_match_are_mutually_exclusive(run_module, tree):
    result = run(run_module, tree, {"busid": "17-1", "match": {"serial": "x"}})
    assert result["failed"] and "mutually exclusive" in result["msg"]


def test_busid_or_match_is_required(run_module, tree):
    result = run(run_module, tree, {})
    assert result["failed"] and "one of the following is required: busid, match" in result["msg"]


@pytest.mark.parametrize("match, error", [
    ({}, "at least one of vendor, product, serial, port_path"),
    ({"vendor": "12345"}, "invalid vendor ID '12345'"),
    ({"vendor": "xyz1"}, "invalid vendor ID"),
    ({"product": 0x10000}, "invalid product ID 65536"),
    ({"vendor": True}, "invalid vendor ID True"),
    ({"port_path": "../x"}, "invalid port_path"),
    ({"serial": "a\nb"}, "invalid serial"),
])
def test_a_bad_match_fails_before_any_sysfs_access(run_module, tree, match, error):
    result = run(run_module, tree, {"match": match})
    assert result["failed"] and error in result["msg"], result["msg"]
    assert run_module.sysfs.touched == []


def test_an_unknown_busid_fails_clearly(run_module, tree):
    result = run(run_module, tree, {"busid": "9-9"})
    assert result["failed"] and result["msg"] == "device with bus ID 9-9 does not exist"
    assert result["error"] == "DeviceNotFound" and run_module.journal == []


@pytest.mark.parametrize("check_mode", [True, False])
@pytest.mark.parametrize("selector, msg, header", [
    ({"busid": "9-9"}, "device 9-9 is not present; nothing to unbind", "usb device 9-9"),
    ({"match": {"serial": "NOPE"}}, "no device on this host matches serial=NOPE; nothing to unbind",
     "usb device serial=NOPE"),
    ({"match": {"vendor": "1209", "product": "0002"}},
     "no device on this host matches vendor=1209 product=0002; nothing to unbind",
     "usb device vendor=1209 product=0002"),
])
def test_absent_on_a_device_that_is_not_there_is_ok(run_module, static_tree, check_mode, selector, msg, header):
    result = run(run_module, static_tree, dict(selector, state="absent"), check_mode=check_mode, diff=True)
    assert not result.get("failed") and result["changed"] is False and result["msg"] == msg
    assert result["device"] is None and result["previous_driver"] is None
    assert result["sysfs_changes"] == [] and result["kernel_modules"] == [] and run_module.journal == []
    assert result["diff"] == {"before": "(not present)\n", "after": "(not present)\n",
                              "before_header": header, "after_header": header}
    assert run_module.commands == run_module.probes == []


def test_absent_still_refuses_an_ambiguous_match(run_module, tree):
    tree.usb_device(XHCI + "/usb18/18-1/18-1.4", devnum=7, devpath="1.4", vendor=0x1209, product=0x0001,
                    interfaces=ACM, strings={"serial": "OTHER"})  # on a free port of the hub
    result = run(run_module, tree, {"match": {"vendor": "1209"}, "state": "absent"})
    assert result["failed"] and result["error"] == "AmbiguousMatch"


def test_absent_on_a_hub_or_an_imported_device_is_unchanged(run_module, static_tree):
    for busid in ("18-1", "1-1"):
        result = run(run_module, static_tree, {"busid": busid, "state": "absent"})
        assert result["changed"] is False and result["device"]["busid"] == busid and "msg" not in result


# -- selection ------------------------------------------------------------------------
@pytest.mark.parametrize("match", [
    {"serial": "SER-gdummy"},  # the vhci copy 1-1 has the same serial: it is never a candidate
    {"vendor": "1209", "product": "0001"},
    {"vendor": "0x1209", "product": 1},
    {"vendor": 0x1209, "serial": "SER-gdummy"},
    {"port_path": "dummy_hcd.0-1"},
])
def test_a_match_selects_the_one_exportable_device(run_module, tree, match):
    result = run(run_module, tree, {"match": match}, check_mode=True)
    assert result["changed"] is True
    assert result["device"]["busid"] == "17-1"
    assert run_module.journal == BIND_17_1


def test_a_bare_devpath_matches_on_any_controller(run_module, tree):
    result = run(run_module, tree, {"match": {"port_path": "1.2"}}, check_mode=True)
    assert result["device"]["busid"] == "18-1.2"
    assert result["device"]["port_path"] == "0000:00:03.0-1.2"


def test_a_match_without_device_lists_the_candidates(run_module, tree):
    result = run(run_module, tree, {"match": {"serial": "NOPE"}})
    assert result["failed"] and result["error"] == "NoMatch"
    msg = result["msg"]
    assert msg.startswith("no device on this host matches serial=NOPE; candidates: 17-1 (1209:0001 serial=SER-gdummy")
    assert "18-1.2 (46f4:0001 serial=LABDISK1 port_path=0000:00:03.0-1.2" in msg
    assert "18-2 (0627:0001" in msg
    assert "1-1 " not in msg and "18-1 " not in msg  # imported devices and hubs are not candidates
    assert run_module.journal == []


def test_an_ambiguous_match_lists_the_devices_it_found(run_module, tree):
    tree.usb_device(XHCI + "/usb18/18-1/18-1.4", devnum=7, devpath="1.4", vendor=0x1209, product=0x0001,
                    interfaces=ACM, strings={"serial": "OTHER"})  # on a free port of the hub
    result = run(run_module, tree, {"match": {"vendor": "1209", "product": "0001"}})
    assert result["failed"] and result["error"] == "AmbiguousMatch"
    assert "2 devices on this host match vendor=1209 product=0001: 17-1 (" in result["msg"]
    assert "18-1.4 (1209:0001 serial=OTHER" in result["msg"]
    assert "narrow the match" in result["hint"]


@pytest.mark.parametrize("busid, error, text", [
    ("18-1", "NotExportable", "device 18-1 is a hub; hubs cannot be exported"),
    ("1-1", "BindLoop", "bind loop detected: device 1-1 is attached through vhci_hcd"),
])
def test_hubs_and_imported_devices_are_refused(run_module, tree, busid, error, text):
    for check_mode in (True, False):
        result = run(run_module, tree, {"busid": busid}, check_mode=check_mode)
        assert result["failed"] and result["error"] == error and result["msg"].startswith(text)
        assert run_module.journal == [] and result["changed"] is False


# -- check mode and diff ---------------------------------------------------------------
def test_check_mode_journals_the_bind_and_shows_the_diff(run_module, tree):
    result = run(run_module, tree, {"busid": "17-1"}, check_mode=True, diff=True)
    assert result["changed"] is True
    assert result["diff"] == {"before": BEFORE, "after": AFTER,
                              "before_header": "usb device 17-1 (1209:0001 serial=SER-gdummy)",
                              "after_header": "usb device 17-1 (1209:0001 serial=SER-gdummy)"}
    assert result["sysfs_changes"] == [{"op": c.op, "path": c.path, "value": c.value} for c in BIND_17_1]
    assert run_module.sysfs.dry_run and tree.read(HOST + "/match_busid") == "\n"


def test_check_mode_through_the_modules_own_dry_run_switch(run_module, tree, monkeypatch):
    """``new_sysfs`` is not replaced: the module's own ``Sysfs(dry_run=check_mode)`` runs, on the fake tree."""
    made = []

    class RootedSysfs(Sysfs):
        """The real gateway, rooted at the fake tree; in a real run it plays usbip-host's part in a bind."""

        def __init__(self, root="/", dry_run=False):
            assert root == "/"  # new_sysfs asks for the kernel's own tree
            super().__init__(str(tree.root), dry_run)
            made.append(self)

        def write(self, path, value):
            super().write(path, value)
            if not self.dry_run and path == HOST + "/bind":
                tree.kernel_host_bind(value)

    monkeypatch.setattr(_usbip_module, "Sysfs", RootedSysfs)
    written = [HOST + "/match_busid", HOST + "/bind", DRIVERS + "/usb/unbind"]
    before = {path: tree.read(path) for path in written}
    check = run_module(usbip_bind, {"busid": "17-1"}, None, check_mode=True, diff=True)
    assert len(made) == 1 and made[0].dry_run is True
    assert check["changed"] is True and check["diff"]["after"] == AFTER
    assert check["sysfs_changes"] == [{"op": c.op, "path": c.path, "value": c.value} for c in BIND_17_1]
    assert {path: tree.read(path) for path in written} == before  # journaled, not written
    real = run_module(usbip_bind, {"busid": "17-1"}, None, diff=True)
    assert len(made) == 2 and made[1].dry_run is False
    assert real["changed"] is True and real["sysfs_changes"] == check["sysfs_changes"]
    assert real["diff"] == check["diff"] and real["device"]["usbip_status"] == "available"
    assert tree.read(DRIVERS + "/usb/unbind") == "17-1"  # the same switch, now writing


def test_no_diff_without_diff_mode(run_module, tree):
    assert "diff" not in run(run_module, tree, {"busid": "17-1"}, check_mode=True)


def test_present_then_absent_converge_and_stay(run_module, tree, kernel):
    first = run_module(usbip_bind, {"busid": "17-1"}, kernel, diff=True)
    assert first["changed"] is True and run_module.journal == BIND_17_1
    assert first["diff"]["before"] == BEFORE and first["diff"]["after"] == AFTER
    assert first["device"]["driver"] == "usbip-host" and first["device"]["usbip_status"] == "available"
    assert first["previous_driver"] == "usb"

    again = run_module(usbip_bind, {"match": {"serial": "SER-gdummy"}}, kernel, diff=True)
    assert again["changed"] is False and run_module.journal == []
    assert again["diff"]["before"] == again["diff"]["after"] == AFTER

    check = run_module(usbip_bind, {"busid": "17-1", "state": "absent"}, kernel, check_mode=True, diff=True)
    assert check["changed"] is True and run_module.journal == UNBIND_17_1
    assert tree.read(DEVICES + "/17-1/usbip_status") == "1\n"  # still bound: nothing was written
    assert "driver: (its usual driver, probed by the kernel)" in check["diff"]["after"]

    gone = run_module(usbip_bind, {"busid": "17-1", "state": "absent"}, kernel, diff=True)
    assert gone["changed"] is True and run_module.journal == UNBIND_17_1
    assert gone["diff"]["before"] == AFTER and gone["diff"]["after"] == BEFORE
    assert gone["device"]["driver"] == "usb" and gone["previous_driver"] == "usbip-host"

    still = run_module(usbip_bind, {"busid": "17-1", "state": "absent"}, kernel)
    assert still["changed"] is False and run_module.journal == []


# -- kernel modules -----------------------------------------------------------------------
@pytest.fixture
def unloaded(tree):
    tree.remove(HOST)
    return tree


def test_without_usbip_host_and_without_loading_the_hint_names_the_module(run_module, unloaded):
    result = run(run_module, unloaded, {"busid": "17-1", "load_kernel_modules": False})
    assert result["failed"] and result["error"] == "DriverNotLoaded"
    assert result["msg"] == "the usbip-host driver is not loaded (modprobe usbip-host)"
    assert result["hint"] == "modprobe usbip-host" and run_module.commands == []


def test_check_mode_reports_the_module_it_would_load(run_module, unloaded):
    result = run(run_module, unloaded, {"busid": "17-1"}, check_mode=True, diff=True)
    assert result["changed"] is True and result["kernel_modules"] == ["usbip-host"]
    assert run_module.commands == [] and result["diff"]["after"] == AFTER
    assert run_module.probes == [["/sbin/modprobe", "-n", "usbip-host"]]  # found, not loaded


def test_check_mode_plans_the_writes_of_a_bind_after_the_module_load(run_module, unloaded):
    result = run(run_module, unloaded, {"busid": "17-1"}, check_mode=True)
    assert result["sysfs_changes"] == [{"op": c.op, "path": c.path, "value": c.value} for c in BIND_17_1]
    assert not unloaded.host_path(HOST).exists()  # the load was only assumed


def test_check_mode_still_refuses_a_hub_when_the_module_is_missing(run_module, unloaded):
    result = run(run_module, unloaded, {"busid": "18-1"}, check_mode=True)
    assert result["failed"] and result["error"] == "NotExportable" and result["changed"] is False


def test_the_module_is_loaded_with_modprobe(run_module, unloaded):
    result = run(run_module, unloaded, {"busid": "17-1"})
    assert run_module.commands == [["/sbin/modprobe", "usbip-host"]]
    # The fake kernel does not create the driver, so bind then fails, but the load was a change.
    assert result["failed"] and result["changed"] is True and result["kernel_modules"] == ["usbip-host"]


def test_a_failed_modprobe_is_reported_with_a_hint(run_module, unloaded):
    run_module.command_rc = 1
    result = run(run_module, unloaded, {"busid": "17-1"})
    assert result["failed"] and result["msg"].startswith("modprobe usbip-host failed (rc 1): modprobe: ERROR")
    assert "run as root" in result["hint"] and result["changed"] is False


def test_check_mode_fails_as_the_real_run_where_the_module_does_not_exist(run_module, unloaded):
    run_module.missing = {"usbip-host"}
    check = run(run_module, unloaded, {"busid": "17-1"}, check_mode=True, diff=True)
    assert run_module.probes == [["/sbin/modprobe", "-n", "usbip-host"]] and run_module.commands == []
    real = run(run_module, unloaded, {"busid": "17-1"})
    assert run_module.commands == [["/sbin/modprobe", "usbip-host"]]
    for result in (check, real):
        assert result["failed"] and result["changed"] is False
        assert result["msg"] == ("modprobe usbip-host failed (rc 1): modprobe: FATAL: Module usbip-host not found in"
                                 " directory /lib/modules/6.1.0-test (%s)" % MODPROBE_HINT)
        assert result["hint"] == MODPROBE_HINT
        assert result["kernel_modules"] == [] and result["sysfs_changes"] == [] and "diff" not in result
    assert not unloaded.host_path(HOST).exists()


# A modprobe for a kernel that has the modules in KNOWN; it appends its arguments to ./calls.
FAKE_MODPROBE = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
for arg; do
    case "$arg" in
    -*) ;;
    KNOWN) exit 0 ;;
    *) echo "modprobe: FATAL: Module $arg not found in directory /lib/modules/6.1.0-test" >&2; exit 1 ;;
    esac
done
"""


def fake_modprobe(bin_dir, known):
    bin_dir.mkdir()
    script = bin_dir / "modprobe"
    script.write_text(FAKE_MODPROBE.replace("KNOWN", "|".join(known) or "''"))
    script.chmod(0o755)
    return bin_dir / "calls"


def test_check_mode_runs_modprobe_n_for_real(run_module, unloaded, tmp_path):
    calls = fake_modprobe(tmp_path / "bin", ["usbip-host"])
    run_module.real_commands(tmp_path / "bin")
    result = run(run_module, unloaded, {"busid": "17-1"}, check_mode=True)
    assert not result.get("failed") and result["changed"] is True and result["kernel_modules"] == ["usbip-host"]
    assert calls.read_text() == "-n usbip-host\n"
    assert result["sysfs_changes"] == [{"op": c.op, "path": c.path, "value": c.value} for c in BIND_17_1]


def test_a_kernel_without_the_module_fails_check_mode_as_the_real_run(run_module, unloaded, tmp_path):
    calls = fake_modprobe(tmp_path / "bin", [])
    run_module.real_commands(tmp_path / "bin")
    check = run(run_module, unloaded, {"busid": "17-1"}, check_mode=True)
    real = run(run_module, unloaded, {"busid": "17-1"})
    assert calls.read_text() == "-n usbip-host\nusbip-host\n"
    assert check["failed"] and real["failed"] and check["msg"] == real["msg"]
    assert check["msg"].startswith("modprobe usbip-host failed (rc 1): modprobe: FATAL: Module usbip-host not found")
    assert check["changed"] is real["changed"] is False and check["kernel_modules"] == real["kernel_modules"] == []


@pytest.mark.parametrize("check_mode", [True, False])
@pytest.mark.parametrize("how", ["not installed", "gone when run"])
def test_without_modprobe_on_the_target_one_line_says_so(run_module, unloaded, tmp_path, check_mode, how):
    if how == "not installed":
        run_module.installed = False
    else:
        run_module.real_commands(tmp_path / "no-such-bin")  # found by name, then not there: FileNotFoundError
    result = run(run_module, unloaded, {"busid": "17-1"}, check_mode=check_mode)
    assert result["failed"] and result["changed"] is False and "\n" not in result["msg"]
    assert result["msg"] == ("modprobe is not installed; cannot load usbip-host (install kmod, or load the modules"
                             " otherwise and set load_kernel_modules: false)")
    assert result["kernel_modules"] == [] and result["sysfs_changes"] == []
