"""Eight attaches started at the same moment all succeed, on distinct ports, every round.

The C client run this way succeeds 3 to 6 times out of 8 in this lab: it
spins on EBUSY for a port another process took, blocks in the kernel's
attach write, or fails to read the status files while they change. Ours
serializes attaches on the host and bounds every retry.
"""

from __future__ import annotations

import json
import subprocess
import time

from lab.guestkit import ours, sh, wait_for
from usbip.sysfs.fs import Sysfs
from usbip.sysfs.vhci import VhciDriver

ROUNDS = 3
WAYS = 8


def imported() -> list:
    """In-process view of the vhci ports (polled); the CLI's view is checked once per round."""
    return [p for p in VhciDriver(Sysfs()).imported() if p.remote_busid]


def test_eight_concurrent_attaches(kernel, gadgets, daemons):
    for n in range(WAYS):
        gadgets("cc%d" % n, "usbip-vudc.%d" % n, 0x1209, 0x0100 + n, "CC-%d" % n, "acm")
    daemons(*ours("usbipd"), "--device", port=3260)
    for round_no in range(ROUNDS):
        started = time.monotonic()
        procs = [subprocess.Popen([*ours("usbip"), "--tcp-port", "3260", "attach", "-r", "127.0.0.1",
                                   "-d", "usbip-vudc.%d" % n], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for n in range(WAYS)]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        elapsed = time.monotonic() - started
        codes = [p.returncode for p in procs]
        print("round %d: %d/%d attached in %.1f s" % (round_no, codes.count(0), WAYS, elapsed))
        assert codes == [0] * WAYS, "\n".join(outputs)
        # A port shows in `usbip port` once the kernel has enumerated its device.
        wait_for(lambda: len(imported()) == WAYS, 30, "all %d devices enumerated" % WAYS)
        ports = json.loads(sh(*ours("usbip"), "port", "--json").stdout)
        assert sorted(p["remote_busid"] for p in ports) == sorted("usbip-vudc.%d" % n for n in range(WAYS))
        assert len({p["port"] for p in ports}) == WAYS
        for p in ports:
            sh(*ours("usbip"), "detach", "-p", str(p["port"]))
        wait_for(lambda: not imported(), 30, "every port free")
        for n in range(WAYS):
            wait_for(lambda n=n: open("/sys/devices/platform/usbip-vudc.%d/usbip_status" % n).read().strip() == "1",
                     30, "usbip-vudc.%d available again" % n)
