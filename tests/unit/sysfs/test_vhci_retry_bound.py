# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vhci's EBUSY retries end at the driver's ``timeout``, not only after ``_ATTACH_ATTEMPTS``.

A peer that takes every port we choose (a C ``usbip attach`` ignores our
lock) makes each write fail with EBUSY. The attempt count alone would go on
for 32 writes; the time bound stops earlier. The clock here is a fake one
that advances one second per refused write, so the figures are exact.
"""

from __future__ import annotations

import time
import types

import pytest
from fake_vhci import ATTACH, FakeVhci

from usbip.device import Speed
from usbip.sysfs import vhci as vhci_module
from usbip.sysfs.errors import NoFreePort
from usbip.sysfs.vhci import VhciDriver


class Clock:
    """``time`` for the vhci module: ``monotonic`` moves only when told; ``sleep`` is the real one."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def module(self):
        return types.SimpleNamespace(monotonic=self.monotonic, sleep=time.sleep)


@pytest.fixture
def fake(tmp_path):
    return FakeVhci(tmp_path, controllers=2)


@pytest.fixture
def clock(fake, monkeypatch):
    """Each attach write the fake kernel handles takes one second."""
    clock = Clock()
    monkeypatch.setattr(vhci_module, "time", clock.module())
    kernel_attach = fake.kernel_attach

    def slow_attach(value):
        clock.now += 1.0
        kernel_attach(value)

    monkeypatch.setattr(fake, "kernel_attach", slow_attach)
    return clock


def writes(driver):
    return [c.value for c in driver.sysfs.journal if c.path == ATTACH]


def test_the_attempt_count_would_allow_more_than_the_time_bound_does():
    assert vhci_module._ATTACH_ATTEMPTS > 4  # noqa: SLF001 - the other bound, which must not be the one reached


def test_retries_stop_when_the_timeout_is_reached(fake, clock):
    fake.steal = 100  # every write finds its port just taken
    driver = VhciDriver(fake.sysfs(), timeout=3.0)
    with pytest.raises(NoFreePort, match=r"ports 0, 1, 2 were all busy when written"):
        driver.attach(3, 1, Speed.HIGH)
    # 1 s, 2 s: retried; 3 s: the bound is reached (at, not past it) and no fourth write is made.
    assert writes(driver) == ["0 3 1 3", "1 3 1 3", "2 3 1 3"]
    assert clock.now == 1003.0


def test_a_retry_inside_the_bound_still_succeeds(fake, clock):
    fake.steal = 2
    driver = VhciDriver(fake.sysfs(), timeout=3.0)
    assert driver.attach(3, 1, Speed.HIGH) == 2
    assert writes(driver) == ["0 3 1 3", "1 3 1 3", "2 3 1 3"]


def test_a_zero_timeout_makes_one_write(fake):
    """The real clock and the smallest bound: the first EBUSY ends the attach."""
    fake.steal = 100
    driver = VhciDriver(fake.sysfs(), timeout=0.0)
    with pytest.raises(NoFreePort, match=r"ports 0 were all busy"):
        driver.attach(3, 1, Speed.HIGH)
    assert writes(driver) == ["0 3 1 3"]
