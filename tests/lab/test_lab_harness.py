"""The lab itself: a guest's exit status reaches the host, and a hung guest is bounded.

These run on the host and boot real guests (a few seconds each).
"""

import io
import os

import pytest

from lab import qemu


@pytest.fixture(autouse=True)
def lab_packages():
    """The lab's packages are part of the test environment (make lab-deps): missing ones fail, with the reason."""
    problem = qemu.preflight()
    assert problem is None, "lab packages missing: run lab/install-deps.sh (%s)" % problem


def test_guest_status_and_output_reach_the_host(tmp_path):
    out = io.StringIO()
    result = qemu.run("uname -r > /tmp/xfer/kernel; echo from-the-guest; exit 7", timeout=120, out=out)
    assert result.rc == 7
    assert "from-the-guest" in out.getvalue()
    with open(os.path.join(result.xfer, "kernel")) as f:
        assert f.read().strip() == os.path.basename(qemu.initramfs.kernel_release())


def test_guest_runs_this_checkout_as_root_on_a_read_only_host():
    out = io.StringIO()
    command = "id -u; test -d plugins/module_utils/usbip && echo tree-visible; touch /probe 2>/dev/null || echo host-ro"
    result = qemu.run(command, timeout=120, out=out)
    assert result.rc == 0
    text = out.getvalue()
    assert "guest| 0\n" in text and "tree-visible" in text and "host-ro" in text


def test_hung_guest_is_killed_at_its_bound_with_console_tail():
    out = io.StringIO()
    result = qemu.run("echo going-to-hang; sleep 600", timeout=20, out=out)
    assert result.rc == qemu.TIMEOUT_RC
    text = out.getvalue()
    assert "guest killed after" in text
    assert "lab:   | going-to-hang" in text
