# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The live monitor applies the export rules before it says READY, and again on SIGHUP.

``python -m usbip.cli.usbipd`` on a fake tree (the harness of
``test_usbipd_process.py``). The fake's files do not react to writes, so the
writes of a bind show in them: usbip-host's ``bind`` holds the busid the
monitor bound. The hotplug side (uevents and the poll, in the network
process) is ``tests/unit/daemon/test_export_rules_live.py``.
"""

from __future__ import annotations

import signal

import test_usbipd_process
from fake_usb import HOST
from test_usbipd_process import Usbipd

shared_dir = test_usbipd_process.shared_dir  # the fixture: a directory every account may read


def test_the_monitor_binds_by_the_rules_at_start_and_on_reload(shared_dir):
    daemon = Usbipd(shared_dir, "exports:\n  - match: {vendor: '46f4', serial: 'LABDISK1'}\n")
    try:
        # READY=1 was heard: by then the monitor had bound the disk its rule names.
        assert daemon.tree.read(HOST + "/bind") == "18-1.2"
        assert daemon.tree.read("/sys/bus/usb/drivers/usb/unbind") == "18-1.2"
        daemon.tree.file(HOST + "/bind", "")
        daemon.tree.kernel_host_bind("18-1.2")  # the kernel's part of that bind
        daemon.config.write_text("exports:\n  - match: {vendor: '46f4'}\n  - busid: 18-2\n")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.notify.wait_for("READY=1")
        assert daemon.tree.read(HOST + "/bind") == "18-2"  # the new rule's device; 18-1.2 is bound already
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert "Traceback" not in daemon.log()
