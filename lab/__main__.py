"""Command line of the lab.

    python3 -m lab [--timeout S] [--usb] run -- 'shell command'   any command, as root, in a fresh guest
    python3 -m lab pytest [pytest args]                         pytest of this checkout, in a fresh guest

``pytest`` guests, and ``run`` guests with ``--usb``, have the emulated USB
hardware of :mod:`lab.usbhw` (a host controller, a hub, storage, serial, HID
and CCID devices) that tests can unplug and plug back while the guest runs.

The exit status is the guest job's; 124 means the guest hit its time bound,
125 that it died without reporting one.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys

from . import qemu, usbhw

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("LAB_TIMEOUT", "900")),
                        help="hard bound on the guest's life, seconds")
    parser.add_argument("--mem", default=os.environ.get("LAB_MEM", "1024M"))
    parser.add_argument("--cpus", type=int, default=int(os.environ.get("LAB_CPUS", "2")))
    parser.add_argument("--results", default=os.path.join(REPO, "build", "lab"), help="where pytest results are copied")
    parser.add_argument("--usb", action="store_true", help="run: give the guest the emulated USB hardware")
    parser.add_argument("verb", choices=("run", "pytest"), help="run: a shell command; pytest: pytest of this checkout")
    argv = sys.argv[1:] if argv is None else argv
    # Everything after the verb belongs to the guest command or to pytest.
    split = next((i for i, word in enumerate(argv) if word in ("run", "pytest")), len(argv))
    opts = parser.parse_args(argv[: split + 1])
    rest = argv[split + 1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]

    problem = qemu.preflight()
    if problem:
        print("lab: " + problem, file=sys.stderr)
        return 2

    if opts.verb == "run":
        if not rest:
            parser.error("run needs a command")
        command = " ".join(rest)
        return qemu.run(command, timeout=opts.timeout, mem=opts.mem, cpus=opts.cpus, workdir=REPO,
                        usb=usbhw.BENCH if opts.usb else ()).rc

    python = os.path.join(REPO, ".venv", "bin", "python")
    if not os.path.exists(python):
        python = sys.executable
    command = "%s -m pytest -p no:cacheprovider --junitxml=/tmp/xfer/junit.xml %s" % (
        shlex.quote(python), " ".join(shlex.quote(a) for a in rest))
    result = qemu.run(command, timeout=opts.timeout, mem=opts.mem, cpus=opts.cpus, workdir=REPO, usb=usbhw.BENCH)
    junit = os.path.join(result.xfer, "junit.xml")
    if os.path.exists(junit):
        os.makedirs(opts.results, exist_ok=True)
        shutil.copy(junit, os.path.join(opts.results, "junit.xml"))
    return result.rc


if __name__ == "__main__":
    sys.exit(main())
