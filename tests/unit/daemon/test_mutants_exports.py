# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the export rules say in the journal, and how a rule names itself (found by mutation testing).

usbipd applies the rules by itself at start and after every hotplug, with nobody watching: its log
lines are the only account of what it bound and of what it could not. They are pinned here word for
word, against a driver stand-in so that only the rules' own code is under test.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from usbip.daemon.exports import ExportRule, apply
from usbip.matching import Match
from usbip.sysfs.errors import NotExportable


class Driver:
    """The two calls ``apply`` makes of a HostDriver: ``bindable()`` and ``bind(busid)``."""

    def __init__(self, devices, refuse=(), unchanged=()):
        self.devices = devices
        self.refuse = set(refuse)
        self.unchanged = set(unchanged)
        self.bound = []

    def bindable(self):
        return self.devices

    def bind(self, busid):
        if busid in self.refuse:
            raise NotExportable("%s is a hub" % busid)
        self.bound.append(busid)
        return SimpleNamespace(changed=busid not in self.unchanged)


def device(busid, usbid="1209:0001", driver="usb"):
    return SimpleNamespace(busid=busid, driver=driver, device=SimpleNamespace(usbid=usbid))


def journal(caplog):
    return [(r.name, r.levelname, r.getMessage()) for r in caplog.records]


def test_each_bind_and_each_refusal_is_one_line(caplog):
    caplog.set_level(logging.INFO, logger="usbipd")
    driver = Driver([device("17-1"), device("18-1", "0409:005a"), device("18-2", "46f4:0001"),
                     device("18-3", driver="usbip-host")], refuse=["18-1"], unchanged=["18-2"])
    rules = [ExportRule(busid="17-1"), ExportRule(busid="18-1"), ExportRule(busid="18-2"), ExportRule(busid="18-3")]
    assert apply(driver, rules) == ["17-1"]
    assert driver.bound == ["17-1", "18-2"]  # 18-1 refused, 18-3 is usbip-host's already
    assert journal(caplog) == [
        ("usbipd", "INFO", "export rule: bound 17-1 (1209:0001) to usbip-host"),
        ("usbipd", "WARNING", "export rule: cannot bind 18-1: 18-1 is a hub"),
    ]


def test_a_rule_names_itself_by_busid_or_by_its_match():
    assert str(ExportRule(busid="17-1")) == "busid=17-1"
    match = Match(vendor=0x1209, serial="A1")
    assert str(ExportRule(match=match)) == str(match) == "vendor=1209 serial=A1"


def test_a_rule_accepts_by_busid_or_by_match_never_both_ways():
    by_busid = ExportRule(busid="17-1", match=Match(vendor=0x1209))
    assert by_busid.accepts(SimpleNamespace(busid="17-1"))
    assert not by_busid.accepts(SimpleNamespace(busid="17-2"))  # the match is not consulted
    assert not ExportRule().accepts(SimpleNamespace(busid="17-1"))
