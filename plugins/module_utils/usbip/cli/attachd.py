# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``usbip-attachd``: keep the declared attachments attached.

Operators replace watchdog scripts and cron jobs with a declaration: this
supervisor checks every few seconds that each declared device is attached
from its server and re-attaches it after a network drop, a server restart
or a reboot of this client, with exponential backoff and one log line per
attempt. It only ever attaches: a device removed from the declaration is
detached by the Ansible role (or the operator), and then stays detached.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Callable, Dict, List, Optional

from ..config import Declared
from ..errors import UsbipError
from .common import EXIT_FAILURE, EXIT_OK, Parser, run_program

log = logging.getLogger("usbip-attachd")


def parse_config(data: object):
    """Validate the YAML the client role templates (see :mod:`usbip.config`): an ``AttachdConfig``."""
    from ..config import parse_attachd  # noqa: PLC0415

    return parse_attachd(data)


class Supervisor:
    """The reconciliation loop, with its I/O passed in so that it can be tested alone.

    ``present(d)`` says whether ``d`` is attached; ``attach(d)`` attaches it
    (raising :class:`UsbipError` on failure) and returns the vhci port.
    """

    def __init__(self, declared: List[Declared], present: Callable[[Declared], bool],
                 attach: Callable[[Declared], int], initial: float = 1.0, maximum: float = 8.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.declared = declared
        self.present = present
        self.attach = attach
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self.delay: Dict[Declared, float] = {}
        self.next_try: Dict[Declared, float] = {}
        self.attempts: Dict[Declared, int] = {}

    def step(self) -> bool:
        """One pass over the declarations; True when everything is attached."""
        complete = True
        for d in self.declared:
            try:
                if self.present(d):
                    if self.attempts.get(d):
                        log.info("%s is attached", d)
                    self.delay.pop(d, None)
                    self.next_try.pop(d, None)
                    self.attempts.pop(d, None)
                    continue
            except UsbipError as err:
                log.warning("%s: cannot read the attachment state: %s", d, err)
            complete = False
            now = self.clock()
            if now < self.next_try.get(d, 0.0):
                continue
            attempt = self.attempts.get(d, 0) + 1
            self.attempts[d] = attempt
            try:
                port = self.attach(d)
                log.info("%s: attempt %d: attached on port %d", d, attempt, port)
                self.delay.pop(d, None)
                self.next_try.pop(d, None)
            except UsbipError as err:
                delay = min(self.delay.get(d, self.initial / 2) * 2, self.maximum)
                self.delay[d] = delay
                self.next_try[d] = now + delay
                log.warning("%s: attempt %d failed: %s; next in %.0f s", d, attempt, err, delay)
        return complete


def _real_io(sysfs, tls: Dict[str, str]):
    """``present`` and ``attach`` against this host's vhci and the network."""
    from .. import attachments  # noqa: PLC0415
    from ..sysfs.vhci import VhciDriver  # noqa: PLC0415

    vhci = VhciDriver(sysfs)
    resolved: Dict[Declared, str] = {}
    endpoints: Dict[Optional[str], object] = {}

    def endpoint(d: Declared):
        """The TLS endpoint of ``d`` (one per server name, certificates read once), or None."""
        if not d.tls:
            return None
        if d.server_name not in endpoints:
            endpoints[d.server_name] = attachments.tls_endpoint(server_name=d.server_name, **tls)
        return endpoints[d.server_name]

    def present(d: Declared) -> bool:
        return bool(attachments.find(vhci, d.server, d.port, d.busid or resolved.get(d), d.match))

    def attach(d: Declared) -> int:
        busid = d.busid
        if busid is None:
            busid = resolved[d] = attachments.resolve(d.server, d.port, match=d.match, tls=endpoint(d)).busid
        return attachments.attach(d.server, d.port, busid, vhci, tls=endpoint(d)).port

    return present, attach


def _parser() -> Parser:
    p = Parser(prog="usbip-attachd", description="Keep declared USB/IP attachments attached.")
    p.add_argument("-c", "--config", default="/etc/usbip/attachments.yml", help="YAML declaration")
    p.add_argument("-d", "--debug", action="store_true")
    p.add_argument("--check-config", action="store_true",
                   help="validate the declaration, print nothing and exit: 0 if it is valid, 2 with the error")
    p.add_argument("--once", action="store_true", help="one pass, then exit 0 if everything is attached")
    return p


def _supervise(args) -> int:
    from .. import config as schema  # noqa: PLC0415
    from ..sysfs.fs import Sysfs  # noqa: PLC0415

    config = schema.load(args.config, schema.parse_attachd)
    if args.check_config:
        return EXIT_OK
    tls = config.tls.paths() if config.tls else {}
    present, attach = _real_io(Sysfs(os.environ.get("USBIP_SYSFS_ROOT", "/")), tls)
    supervisor = Supervisor(list(config.attachments), present, attach, config.retry_initial, config.retry_max)
    log.info("supervising %d attachment(s): %s", len(config.attachments),
             ", ".join(map(str, config.attachments)) or "none")
    if args.once:
        return EXIT_OK if supervisor.step() else EXIT_FAILURE
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        supervisor.step()
        stop.wait(config.interval)
    log.info("stopped")
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    return run_program("usbip-attachd", _parser, _supervise, argv)


if __name__ == "__main__":
    raise SystemExit(main())
