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

import concurrent.futures
import contextlib
import logging
import os
import signal
import threading
import time
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

from ..config import Declared
from ..errors import UsbipError
from .common import EXIT_FAILURE, EXIT_OK, Parser, run_program

log = logging.getLogger("usbip-attachd")

#: Attempts of one pass that run at once; the others wait for a free worker.
WORKERS = 4


def parse_config(data: object):
    """Validate the YAML the client role templates (see :mod:`usbip.config`): an ``AttachdConfig``."""
    from ..config import parse_attachd  # noqa: PLC0415

    return parse_attachd(data)


class Supervisor:
    """The reconciliation loop, with its I/O passed in so that it can be tested alone.

    ``present(d)`` says whether ``d`` is attached; ``attach(d)`` attaches it
    (raising :class:`UsbipError` on failure) and returns the vhci port; each
    real attempt is bounded by its own deadline (the declaration's
    ``timeout``). The attempts of one pass run at once, on up to ``workers``
    threads, so a server that answers slowly, or a byte at a time, delays
    nobody else; the pass ends when its last attempt does. ``lock()`` is
    held while they run (the host's attach lock, shared with the
    ``usbip_attach`` module), and each attempt looks again whether its
    device is attached before attaching it.
    """

    def __init__(self, declared: List[Declared], present: Callable[[Declared], bool],
                 attach: Callable[[Declared], int], initial: float = 1.0, maximum: float = 8.0,
                 clock: Callable[[], float] = time.monotonic,
                 lock: Callable[[], ContextManager[object]] = contextlib.nullcontext,
                 workers: int = WORKERS) -> None:
        self.declared = declared
        self.present = present
        self.attach = attach
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self.lock = lock
        self.workers = workers
        self.delay: Dict[Declared, float] = {}
        self.next_try: Dict[Declared, float] = {}
        self.attempts: Dict[Declared, int] = {}

    def declare(self, declared: List[Declared], present: Callable[[Declared], bool],
                attach: Callable[[Declared], int], initial: float, maximum: float) -> None:
        """Supervise a new declaration (a reload); what is still declared keeps its backoff."""
        self.declared, self.present, self.attach = declared, present, attach
        self.initial, self.maximum = initial, maximum
        for state in (self.delay, self.next_try, self.attempts):
            for d in [d for d in state if d not in declared]:
                del state[d]

    def step(self) -> bool:
        """One pass over the declarations; True when everything is attached at its end."""
        due: List[Declared] = []
        waiting = 0  # missing, but their backoff is not over: this pass leaves them alone
        for d in self.declared:
            if self._is_present(d):
                self._attached(d)
            elif self.clock() >= self.next_try.get(d, 0.0):
                due.append(d)
            else:
                waiting += 1
        if not due:
            return waiting == 0
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self.lock())
            except UsbipError as err:
                log.warning("attempts postponed: %s", err)
                return False
            attached = self._attempt_all(due)
        return waiting == 0 and attached == len(due)

    def _is_present(self, d: Declared) -> bool:
        try:
            return self.present(d)
        except UsbipError as err:
            log.warning("%s: cannot read the attachment state: %s", d, err)
            return False

    def _attached(self, d: Declared) -> None:
        if self.attempts.get(d):
            log.info("%s is attached", d)
        self.delay.pop(d, None)
        self.next_try.pop(d, None)
        self.attempts.pop(d, None)

    def _attempt(self, d: Declared) -> Optional[int]:
        """One attempt, run by a worker: None when ``d`` turned out attached (by someone else) meanwhile."""
        if self._is_present(d):
            return None
        return self.attach(d)

    def _attempt_all(self, due: List[Declared]) -> int:
        """Run the attempts of ``due`` at once; log each as it ends; how many ended attached."""
        started: Dict[concurrent.futures.Future, Tuple[Declared, int, float]] = {}
        attached = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(self.workers, len(due)),
                                                   thread_name_prefix="attempt") as pool:
            for d in due:
                attempt = self.attempts.get(d, 0) + 1
                self.attempts[d] = attempt
                started[pool.submit(self._attempt, d)] = (d, attempt, self.clock())
            for future in concurrent.futures.as_completed(started):
                d, attempt, when = started[future]
                try:
                    port = future.result()
                except UsbipError as err:
                    delay = min(self.delay.get(d, self.initial / 2) * 2, self.maximum)
                    self.delay[d] = delay
                    self.next_try[d] = when + delay
                    log.warning("%s: attempt %d failed: %s; next in %.0f s", d, attempt, err, delay)
                    continue
                attached += 1
                if port is None:
                    log.info("%s: attached meanwhile by another attach", d)
                    self.attempts.pop(d, None)
                else:
                    log.info("%s: attempt %d: attached on port %d", d, attempt, port)
                self.delay.pop(d, None)
                self.next_try.pop(d, None)
        return attached


def _real_io(sysfs, tls: Dict[str, str], timeout: float):
    """``present`` and ``attach`` against this host's vhci and the network.

    ``attach`` runs in the workers of a pass, several at a time: each has its
    own deadline of ``timeout`` seconds for its exchanges with the server (the
    list, for a device chosen by match, and the import); the hand-over to vhci
    is serialized by the driver's host-wide lock.
    """
    from .. import attachments  # noqa: PLC0415
    from ..sysfs.vhci import VhciDriver  # noqa: PLC0415

    vhci = VhciDriver(sysfs)
    resolved: Dict[Declared, str] = {}
    endpoints: Dict[Optional[str], object] = {}
    endpoints_lock = threading.Lock()

    def endpoint(d: Declared):
        """The TLS endpoint of ``d`` (one per server name, certificates read once), or None."""
        if not d.tls:
            return None
        with endpoints_lock:
            if d.server_name not in endpoints:
                endpoints[d.server_name] = attachments.tls_endpoint(server_name=d.server_name, **tls)
            return endpoints[d.server_name]

    def present(d: Declared) -> bool:
        return bool(attachments.find(vhci, d.server, d.port, d.busid or resolved.get(d), d.match))

    def attach(d: Declared) -> int:
        busid, left = d.busid, timeout
        if busid is None:
            # Two exchanges, one deadline: the import has what the list left of it.
            deadline = time.monotonic() + timeout
            busid = resolved[d] = attachments.resolve(d.server, d.port, match=d.match, timeout=timeout,
                                                      tls=endpoint(d)).busid
            left = deadline - time.monotonic()
            if left <= 0:
                raise UsbipError("no time left to import %s from %s:%d within %g s"
                                 % (busid, d.server, d.port, timeout))
        return attachments.attach(d.server, d.port, busid, vhci, timeout=left, tls=endpoint(d)).port

    return present, attach


def _parser() -> Parser:
    p = Parser(prog="usbip-attachd", description="Keep declared USB/IP attachments attached.")
    p.add_argument("-c", "--config", default="/etc/usbip/attachments.yml", help="YAML declaration")
    p.add_argument("-d", "--debug", action="store_true")
    p.add_argument("--check-config", action="store_true",
                   help="validate the declaration, print nothing and exit: 0 if it is valid, 2 with the error")
    p.add_argument("--once", action="store_true", help="one pass, then exit 0 if everything is attached")
    return p


def _status(config) -> str:
    return "STATUS=supervising %d attachment(s)" % len(config.attachments)


def _apply(supervisor: Supervisor, config, sysfs) -> None:
    """Make ``supervisor`` keep ``config``'s declarations, with I/O for its TLS files and timeout."""
    tls = config.tls.paths() if config.tls else {}
    present, attach = _real_io(sysfs, tls, config.timeout)
    supervisor.declare(list(config.attachments), present, attach, config.retry_initial, config.retry_max)
    log.info("supervising %d attachment(s): %s", len(config.attachments),
             ", ".join(map(str, config.attachments)) or "none")


def _reload(path: str, config, supervisor: Supervisor, sysfs):
    """SIGHUP: read the declaration again; a bad one is one line and the one loaded before stays."""
    from .. import config as schema  # noqa: PLC0415
    from . import systemd  # noqa: PLC0415

    systemd.reloading()
    try:
        new = schema.load(path, schema.parse_attachd)
    except UsbipError as err:
        log.error("reload refused, the declaration loaded before stays: %s", err)
    else:
        _apply(supervisor, new, sysfs)
        config = new
    systemd.notify("READY=1", _status(config))
    return config


def _wait_for_vhci(sysfs, stop: threading.Event, interval: float) -> bool:
    """Wait until vhci-hcd is loaded (the role loads it first); False when stopped before."""
    from ..sysfs.errors import DriverNotLoaded  # noqa: PLC0415
    from ..sysfs.vhci import VhciDriver  # noqa: PLC0415

    vhci = VhciDriver(sysfs)
    told = False
    while not stop.is_set():
        try:
            vhci.check_loaded()
            return True
        except DriverNotLoaded as err:
            if not told:
                log.warning("waiting for vhci-hcd: %s", err)
                told = True
        stop.wait(interval)
    return False


def _supervise(args) -> int:
    from .. import attachments  # noqa: PLC0415
    from .. import config as schema  # noqa: PLC0415
    from ..sysfs.fs import Sysfs  # noqa: PLC0415
    from . import systemd  # noqa: PLC0415

    config = schema.load(args.config, schema.parse_attachd)
    if args.check_config:
        return EXIT_OK
    sysfs = Sysfs(os.environ.get("USBIP_SYSFS_ROOT", "/"))
    supervisor = Supervisor([], lambda d: False, lambda d: 0, lock=lambda: attachments.attach_lock(sysfs))
    _apply(supervisor, config, sysfs)
    if args.once:
        return EXIT_OK if supervisor.step() else EXIT_FAILURE
    stop = threading.Event()
    wake = threading.Event()
    reload_asked = threading.Event()

    def on_stop(*_args) -> None:
        stop.set()
        wake.set()

    def on_hangup(*_args) -> None:
        reload_asked.set()
        wake.set()

    previous = {signum: signal.signal(signum, handler)
                for signum, handler in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop),
                                        (signal.SIGHUP, on_hangup))}
    try:
        if _wait_for_vhci(sysfs, stop, config.interval):
            systemd.notify("READY=1", _status(config))
        while not stop.is_set():
            if reload_asked.is_set():
                reload_asked.clear()
                config = _reload(args.config, config, supervisor, sysfs)
            supervisor.step()
            wake.wait(config.interval)
            wake.clear()
    finally:
        systemd.notify("STOPPING=1")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped")
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    return run_program("usbip-attachd", _parser, _supervise, argv)


if __name__ == "__main__":
    raise SystemExit(main())
