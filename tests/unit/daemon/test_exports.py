"""Export rules: parsing rejects nonsense, applying binds exactly what the rules accept."""

from __future__ import annotations

import pytest
from fake_usb import standard_tree

from usbip.config import parse_usbipd
from usbip.daemon import exports
from usbip.errors import InvalidArgument
from usbip.sysfs.fs import Change, Sysfs
from usbip.sysfs.host import HostDriver


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return standard_tree(tmp_path_factory.mktemp("sys"))


def rules_of(entries):
    """Export rules as usbipd reads them from its configuration."""
    return list(parse_usbipd({"exports": entries}).exports)


def dry(tree) -> HostDriver:
    return HostDriver(Sysfs(str(tree.root), dry_run=True))


@pytest.mark.parametrize("entry", [
    {}, {"busid": "../../x"}, {"busid": "17-1", "match": {"vendor": "1209"}}, {"match": {}},
    {"match": {"vendor": "zzzz"}}, {"match": {"colour": "red"}}, "17-1", {"serial": "x"},
])
def test_bad_rules_are_refused(entry):
    with pytest.raises(InvalidArgument):
        rules_of([entry])


def test_rules_bind_matching_devices_only(tree):
    driver = dry(tree)
    rules = rules_of([{"match": {"vendor": "46f4", "serial": "LABDISK1"}}])
    assert exports.apply(driver, rules) == ["18-1.2"]
    assert driver.sysfs.journal == [
        Change("write", "/sys/bus/usb/devices/18-1.2/driver/unbind", "18-1.2"),
        Change("write", "/sys/bus/usb/drivers/usbip-host/match_busid", "add 18-1.2"),
        Change("write", "/sys/bus/usb/drivers/usbip-host/bind", "18-1.2"),
    ]


def test_rules_never_touch_hubs_or_imported_devices(tree):
    driver = dry(tree)
    rules = rules_of([{"match": {"vendor": "0409"}}, {"match": {"vendor": "1d6b"}}, {"busid": "1-1"}])
    assert exports.apply(driver, rules) == []
    assert driver.sysfs.journal == []


def test_a_rule_is_a_policy_over_every_match(tree):
    driver = dry(tree)
    rules = rules_of([{"match": {"vendor": "1209"}}, {"busid": "18-2"}])
    assert exports.apply(driver, rules) == ["17-1", "18-2"]


def test_no_rules_reads_nothing(tree):
    class Untouchable:
        def bindable(self):
            raise AssertionError("scanned without rules")
    assert exports.apply(Untouchable(), []) == []


def test_one_daemon_serves_both_modes(tree):
    from usbip.daemon.catalog import BothModes, exporter_for

    backend = exporter_for(["host", "device"], tree.sysfs(dry_run=True))
    assert isinstance(backend, BothModes)
    # nothing bound to usbip-host in the standard tree; usbip-vudc.0 carries a gadget
    assert [d.busid for d in backend.scan()] == ["usbip-vudc.0"]
    backend.export("usbip-vudc.0", 7)
    assert backend.drivers[1].sysfs.journal[-1] == Change(
        "write", "/sys/devices/platform/usbip-vudc.0/usbip_sockfd", "7")
    with pytest.raises(Exception, match="not bound to usbip-host"):
        backend.export("17-1", 7)
