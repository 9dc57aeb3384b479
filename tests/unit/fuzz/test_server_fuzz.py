# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Short runs of the live-server fuzzer: mutated and truncated requests to a usbipd on 127.0.0.1.

The long run (a million inputs) is ``python -m tests.fuzz.server`` (docs/security.md).
"""

from __future__ import annotations

import pytest

from tests.fuzz import server
from usbip.sysfs.host import HostDriver


@pytest.mark.parametrize("mode, inputs", [("host", 3000), ("device", 2000)])
def test_short_run_against_a_live_server(mode, inputs):
    report = server.run(inputs, mode=mode, seed=11, check_every=1000)
    assert report.failures == [], report.text()
    assert report.inputs == inputs and report.devlist_checks == inputs // 1000
    # Every kind of input was sent, and the daemon saw them as such.
    assert set(report.outcomes) == {"refused", "incomplete", "request", "request+trailing"}
    assert report.stats["bad"] > inputs // 2
    assert report.stats["exported"] > 0  # imports of the exported busid went through to sysfs
    assert "ERROR" not in report.log_levels and "CRITICAL" not in report.log_levels


def test_an_internal_error_in_the_daemon_is_reported(monkeypatch):
    """The run can fail: an exception escaping the request handler is logged as internal error and caught."""

    def broken(self, busid, sockfd):
        raise RuntimeError("planted")

    monkeypatch.setattr(HostDriver, "export", broken)
    report = server.run(3000, mode="host", seed=11, check_every=1000)
    assert any("internal error" in failure for failure in report.failures), report.text()
