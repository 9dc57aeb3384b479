# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``usbip-attachd``: keep the declared attachments attached.

Operators replace watchdog scripts and cron jobs with a declaration: this
supervisor checks every few seconds that each declared device is attached
from its server and re-attaches it after a network drop, a server restart
or a reboot of this client, with exponential backoff and one log line per
attempt. It only ever attaches: a device removed from the declaration is
detached by the Ansible role (or the operator), and then stays detached.

A declaration with ``all: true`` names a pool rather than a device: every
device of the server that its match takes (every device the server offers,
without a match). Each pass lists the server and attaches what the match
takes and is not attached yet, so a device the server starts offering
later (plugged in, bound) is attached on the next pass.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Callable, ContextManager, Dict, Iterator, List, Optional, Tuple, Union

from ..config import Declared
from ..errors import UsbipError
from .common import EXIT_FAILURE, EXIT_OK, Parser, run_program

log = logging.getLogger("usbip-attachd")

#: Attempts of one pass that run at once; the others wait for a free worker.
WORKERS = 4
#: Seconds a hold of the attach lock stays open to more of this daemon's attempts (see :class:`SharedHold`).
JOIN_FOR = 10.0
#: Seconds between letting the attach lock go and taking it again: ``usbip_attach`` polls for it every 50 ms.
PAUSE = 0.2
#: Seconds a connection may have waited for the attach lock and still be used: usbipd closes a connection
#: that sends no complete request within its ``read_timeout`` (10 s by default), so one that waited longer
#: is made again, under the lock.
IDLE_MAX = 2.0


def parse_config(data: object):
    """Validate the YAML the client role templates (see :mod:`usbip.config`): an ``AttachdConfig``."""
    from ..config import parse_attachd  # noqa: PLC0415

    return parse_attachd(data)


class Postponed(UsbipError):
    """The attach lock stayed with another holder until the attempt's deadline: nothing was tried."""


#: ``hold(wait)``: the attach lock, waited for at most ``wait`` seconds (see :class:`SharedHold`).
Hold = Callable[[float], ContextManager[None]]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What one attempt of an ``all`` declaration did.

    ``attached``: (server busid, vhci port) of each device it attached;
    ``failed``: (server busid, error) of each it could not; ``postponed``: why
    it stopped before its last device (the attach lock stayed with another
    holder), or None. Nothing attached and nothing failed is a success: what
    the match takes is attached already, or the server offers none of it.
    """

    attached: Tuple[Tuple[str, int], ...] = ()
    failed: Tuple[Tuple[str, str], ...] = ()
    postponed: Optional[str] = None


#: What ``attach(d, hold)`` returns: the vhci port (None: attached meanwhile), or for ``all`` a :class:`Sweep`.
Outcome = Union[Optional[int], Sweep]


class SharedHold:
    """The host's attach lock, as the attempts of this daemon hold it: together, and never for long.

    The lock keeps this daemon and the ``usbip_attach`` module apart: each
    holds it across "is it attached? / attach". The attempts of one pass need
    no lock against each other (each has its own declaration; vhci's own lock
    orders their choice of a port), and taking it one at a time would queue
    every attempt behind the slowest server's import. So the first attempt
    that needs it takes the lock (``lock(wait)``), the others join while it is
    held, and the last one out lets it go. A hold takes no more attempts once
    it is ``join_for`` seconds old: later ones wait for it to end, and the
    lock is taken again no sooner than ``pause`` after it was let go, so that a
    module waiting for it gets its turn. A wait that reaches the attempt's
    deadline is :class:`Postponed`.
    """

    def __init__(self, lock: Callable[[float], ContextManager[object]], join_for: float = JOIN_FOR,
                 pause: float = PAUSE) -> None:
        self._lock = lock
        self.join_for = join_for
        self.pause = pause
        self._state = threading.Condition()
        self._holders = 0
        self._taking = False
        self._since = 0.0
        self._let_go = float("-inf")
        self._held: Optional[contextlib.ExitStack] = None

    @property
    def held(self) -> bool:
        """Whether an attempt holds the lock now."""
        with self._state:
            return self._holders > 0

    @contextlib.contextmanager
    def __call__(self, wait: float) -> Iterator[None]:
        self._enter(time.monotonic() + wait)
        try:
            yield
        finally:
            self._leave()

    def _enter(self, deadline: float) -> None:
        with self._state:
            while True:
                now = time.monotonic()
                if self._holders and now - self._since < self.join_for:
                    self._holders += 1
                    return
                if not self._holders and not self._taking:
                    self._taking = True
                    let_go = self._let_go
                    break
                if now >= deadline:
                    raise Postponed("the attach lock was not free for this attempt by its deadline")
                self._state.wait(deadline - now)
        held = contextlib.ExitStack()
        try:
            time.sleep(max(min(let_go + self.pause, deadline) - time.monotonic(), 0.0))
            held.enter_context(self._lock(max(deadline - time.monotonic(), 0.0)))
        except BaseException as err:
            with self._state:
                self._taking = False
                self._state.notify_all()
            if isinstance(err, UsbipError):
                raise Postponed(str(err)) from None
            raise
        with self._state:
            self._taking = False
            self._held, self._holders, self._since = held, 1, time.monotonic()
            self._state.notify_all()

    def _leave(self) -> None:
        with self._state:
            self._holders -= 1
            if self._holders:
                return
            held, self._held = self._held, None
            try:
                if held is not None:
                    held.close()
            finally:
                self._let_go = time.monotonic()
                self._state.notify_all()


class Supervisor:
    """The reconciliation loop, with its I/O passed in so that it can be tested alone.

    ``present(d)`` says whether ``d`` is attached. ``attach(d, hold)`` makes
    one attempt: what only waits on the network (the list, for a device
    chosen by match; connecting; the TLS handshake) first, then, inside
    ``hold(wait)`` (the host's attach lock, shared with the ``usbip_attach``
    module, see :class:`SharedHold`), it looks again whether ``d`` is attached
    and imports and attaches it if not. It returns the vhci port, or None when
    ``d`` turned out attached meanwhile, and raises :class:`UsbipError` on
    failure; each real attempt is bounded by its own deadline (the
    declaration's ``timeout``). The attempts of one pass run at once, on up to
    ``workers`` threads, so a server that answers slowly, or a byte at a time,
    delays nobody else; the pass ends when its last attempt does.

    An ``all`` declaration (``d.all_devices``) is never ``present``: the server
    may offer a new device of it at any time. It has an attempt on every pass
    (outside its backoff), whose ``attach`` returns a :class:`Sweep`; a sweep
    that attached nothing and failed nothing logs nothing.
    """

    def __init__(self, declared: List[Declared], present: Callable[[Declared], bool],
                 attach: Callable[[Declared, Hold], Outcome], initial: float = 1.0, maximum: float = 8.0,
                 clock: Callable[[], float] = time.monotonic,
                 lock: Callable[[float], ContextManager[object]] = lambda wait: contextlib.nullcontext(),
                 workers: int = WORKERS) -> None:
        self.declared = declared
        self.present = present
        self.attach = attach
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self.hold = SharedHold(lock)
        self.workers = workers
        self.delay: Dict[Declared, float] = {}
        self.next_try: Dict[Declared, float] = {}
        self.attempts: Dict[Declared, int] = {}

    def declare(self, declared: List[Declared], present: Callable[[Declared], bool],
                attach: Callable[[Declared, Hold], Outcome], initial: float, maximum: float) -> None:
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
            if not d.all_devices and self._is_present(d):
                self._attached(d)
            elif self.clock() >= self.next_try.get(d, 0.0):
                due.append(d)
            else:
                waiting += 1
        if not due:
            return waiting == 0
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

    def _attempt_all(self, due: List[Declared]) -> int:
        """Run the attempts of ``due`` at once; log each as it ends; how many ended attached."""
        started: Dict[concurrent.futures.Future, Tuple[Declared, int, float]] = {}
        attached = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(self.workers, len(due)),
                                                   thread_name_prefix="attempt") as pool:
            for d in due:
                attempt = self.attempts.get(d, 0) + 1
                self.attempts[d] = attempt
                started[pool.submit(self.attach, d, self.hold)] = (d, attempt, self.clock())
            for future in concurrent.futures.as_completed(started):
                d, attempt, when = started[future]
                try:
                    port = future.result()
                except Postponed as err:
                    self._postponed(d, attempt, str(err))
                    continue
                except UsbipError as err:
                    self._failed(d, attempt, when, str(err))
                    continue
                if isinstance(port, Sweep):
                    attached += self._swept(d, attempt, when, port)
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

    def _postponed(self, d: Declared, attempt: int, why: str) -> None:
        """Tried again on the next pass, not counted: another attach had the host."""
        if attempt > 1:
            self.attempts[d] = attempt - 1
        else:
            del self.attempts[d]
        log.warning("%s: attempt postponed: %s", d, why)

    def _failed(self, d: Declared, attempt: int, when: float, why: str) -> None:
        delay = min(self.delay.get(d, self.initial / 2) * 2, self.maximum)
        self.delay[d] = delay
        self.next_try[d] = when + delay
        log.warning("%s: attempt %d failed: %s; next in %.0f s", d, attempt, why, delay)

    def _swept(self, d: Declared, attempt: int, when: float, sweep: Sweep) -> int:
        """Log an ``all`` declaration's attempt: 1 when it ended with everything attached, else 0."""
        for busid, port in sweep.attached:
            log.info("%s: attempt %d: attached %s on port %d", d, attempt, busid, port)
        if sweep.failed:
            self._failed(d, attempt, when, "; ".join("%s: %s" % failure for failure in sweep.failed))
            return 0
        if sweep.postponed is not None:
            self._postponed(d, attempt, sweep.postponed)
            return 0
        if attempt > 1 and not sweep.attached:
            log.info("%s: attempt %d: nothing left to attach", d, attempt)
        self.attempts.pop(d, None)
        self.delay.pop(d, None)
        self.next_try.pop(d, None)
        return 1


class HostIo:
    """``present`` and ``attach`` against this host's vhci and the network, for one declaration's settings.

    ``attach`` runs in the workers of a pass, several at a time: each has its
    own deadline of ``timeout`` seconds for its exchanges with the server (the
    list, for a device chosen by match; connecting and the TLS handshake; the
    import), and holds the attach lock only around the last step. For an
    ``all`` declaration (:meth:`sweep`) the list has that deadline, and each
    device's connection and import one of their own, one device after the
    other. The TLS
    endpoints (one per server name, certificates read once) are made on first
    use; :meth:`close` wipes and closes them (a reload, the exit).
    """

    def __init__(self, sysfs, tls: Dict[str, str], timeout: float) -> None:
        from ..sysfs.vhci import VhciDriver  # noqa: PLC0415

        self.vhci = VhciDriver(sysfs)
        self.tls = tls
        self.timeout = timeout
        self.resolved: Dict[Declared, str] = {}
        self.endpoints: Dict[Optional[str], object] = {}
        self._endpoints_lock = threading.Lock()

    def endpoint(self, d: Declared):
        """The TLS endpoint of ``d``, or None."""
        from .. import attachments  # noqa: PLC0415

        if not d.tls:
            return None
        with self._endpoints_lock:
            if d.server_name not in self.endpoints:
                self.endpoints[d.server_name] = attachments.tls_endpoint(server_name=d.server_name, **self.tls)
            return self.endpoints[d.server_name]

    def present(self, d: Declared) -> bool:
        from .. import attachments  # noqa: PLC0415

        return bool(attachments.find(self.vhci, d.server, d.port, d.busid or self.resolved.get(d), d.match))

    def attach(self, d: Declared, hold: Hold) -> Outcome:
        """One attempt: list (by match), connect, then under ``hold`` look again and import; see :class:`Supervisor`."""
        from .. import attachments  # noqa: PLC0415

        if d.all_devices:
            return self.sweep(d, hold)
        deadline = time.monotonic() + self.timeout
        tls = self.endpoint(d)
        busid = d.busid
        if busid is None:
            busid = self.resolved[d] = attachments.resolve(d.server, d.port, match=d.match, timeout=self.timeout,
                                                           tls=tls).busid
        return self._import(d, busid, hold, deadline, tls, lambda: self.present(d))

    def sweep(self, d: Declared, hold: Hold) -> Sweep:
        """One attempt of an ``all`` declaration: list the server, then import each device its match takes.

        The server lists only what nobody has imported, so each device listed
        is one to attach; under the lock each is looked for again (by its busid)
        in case the module attached it meanwhile. A device that fails does not
        stop the others; a lock that stays busy stops the sweep (the next pass
        goes on).
        """
        from .. import attachments  # noqa: PLC0415

        tls = self.endpoint(d)
        offered = attachments.resolve_all(d.server, d.port, d.match, timeout=self.timeout, tls=tls)
        attached: List[Tuple[str, int]] = []
        failed: List[Tuple[str, str]] = []
        for device in offered:
            def present(busid: str = device.busid) -> bool:
                return bool(attachments.find(self.vhci, d.server, d.port, busid))

            try:
                port = self._import(d, device.busid, hold, time.monotonic() + self.timeout, tls, present)
            except Postponed as err:
                return Sweep(tuple(attached), tuple(failed), postponed=str(err))
            except UsbipError as err:
                failed.append((device.busid, str(err)))
                continue
            if port is not None:
                attached.append((device.busid, port))
        return Sweep(tuple(attached), tuple(failed))

    def _import(self, d: Declared, busid: str, hold: Hold, deadline: float, tls: object,
                present: Callable[[], bool]) -> Optional[int]:
        """Connect (before the lock), then under ``hold`` look again with ``present`` and import ``busid``."""
        from .. import attachments  # noqa: PLC0415

        def prepare():
            left = deadline - time.monotonic()
            if left <= 0:
                raise UsbipError("no time left to import %s from %s:%d within %g s"
                                 % (busid, d.server, d.port, self.timeout))
            return attachments.prepare_attach(d.server, d.port, self.vhci, timeout=left, tls=tls)

        with contextlib.ExitStack() as stack:
            prepared = stack.enter_context(prepare())  # connected (and TLS established) before the lock
            asked = time.monotonic()
            with hold(deadline - asked):
                if present():
                    return None
                if time.monotonic() - asked > IDLE_MAX:
                    prepared.close()  # the server may have given it up meanwhile
                    prepared = stack.enter_context(prepare())
                return prepared.attach(busid).port

    def close(self) -> None:
        with self._endpoints_lock:
            endpoints, self.endpoints = list(self.endpoints.values()), {}
        for endpoint in endpoints:
            endpoint.close()


def _parser() -> Parser:
    p = Parser(prog="usbip-attachd", description="Keep declared USB/IP attachments attached.")
    p.add_argument("-c", "--config", default="/etc/usbip/attachments.yml", help="YAML declaration")
    p.add_argument("-d", "--debug", action="store_true")
    p.add_argument("--check-config", action="store_true",
                   help="validate the declaration, print nothing and exit: 0 if it is valid, 2 with the error")
    p.add_argument("--check-files", action="store_true",
                   help="with --check-config: also load the TLS certificate, key and CA it names, as an attach "
                        "would (0 if they load, 2 with the error)")
    p.add_argument("--once", action="store_true", help="one pass, then exit 0 if everything is attached")
    return p


def _status(config) -> str:
    return "STATUS=supervising %d attachment(s)" % len(config.attachments)


def _apply(supervisor: Supervisor, config, sysfs) -> HostIo:
    """Make ``supervisor`` keep ``config``'s declarations, with I/O for its TLS files and timeout (returned:
    the caller closes it once it is replaced)."""
    io = HostIo(sysfs, config.tls.paths() if config.tls else {}, config.timeout)
    supervisor.declare(list(config.attachments), io.present, io.attach, config.retry_initial, config.retry_max)
    log.info("supervising %d attachment(s): %s", len(config.attachments),
             ", ".join(map(str, config.attachments)) or "none")
    return io


def _reload(path: str, config, supervisor: Supervisor, sysfs, io: HostIo) -> Tuple[object, HostIo]:
    """SIGHUP: read the declaration again; a bad one is one line and the one loaded before stays.

    Runs between passes, so no attempt uses the I/O it replaces: the old TLS
    endpoints are closed (their key logs and certificate copies wiped).
    """
    from .. import config as schema  # noqa: PLC0415
    from . import systemd  # noqa: PLC0415

    systemd.reloading()
    try:
        new = schema.load(path, schema.parse_attachd)
    except UsbipError as err:
        log.error("reload refused, the declaration loaded before stays: %s", err)
    else:
        old, io = io, _apply(supervisor, new, sysfs)
        old.close()
        config = new
    systemd.notify("READY=1", _status(config))
    return config, io


def _check_files(config) -> None:
    """Load the TLS material the declaration names, as an attach would; its error as an invalid argument."""
    from .. import attachments  # noqa: PLC0415
    from ..errors import InvalidArgument  # noqa: PLC0415

    if config.tls is None:
        return
    try:
        endpoint = attachments.tls_endpoint(**config.tls.paths())
    except UsbipError as err:
        raise InvalidArgument(str(err)) from None
    endpoint.close()


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
    from ..errors import InvalidArgument  # noqa: PLC0415
    from ..sysfs.fs import Sysfs  # noqa: PLC0415
    from . import systemd  # noqa: PLC0415

    if args.check_files and not args.check_config:
        raise InvalidArgument("--check-files goes with --check-config")
    config = schema.load(args.config, schema.parse_attachd)
    if args.check_config:
        if args.check_files:
            _check_files(config)
        return EXIT_OK
    sysfs = Sysfs(os.environ.get("USBIP_SYSFS_ROOT", "/"))
    supervisor = Supervisor([], lambda d: False, lambda d, hold: 0,
                            lock=lambda wait: attachments.attach_lock(sysfs, wait=wait))
    io = _apply(supervisor, config, sysfs)
    try:
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
                    config, io = _reload(args.config, config, supervisor, sysfs, io)
                supervisor.step()
                wake.wait(config.interval)
                wake.clear()
        finally:
            systemd.notify("STOPPING=1")
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        io.close()
    log.info("stopped")
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    return run_program("usbip-attachd", _parser, _supervise, argv)


if __name__ == "__main__":
    raise SystemExit(main())
