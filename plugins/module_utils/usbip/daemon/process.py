# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""usbipd's two processes: the privileged monitor and the network process it forks.

The monitor validates the configuration, checks the kernel, loads the TLS
material, applies the export rules and forks the network process, then only
answers that process's requests (:mod:`usbip.daemon.privsep`) and watches
it. The network process binds the listening sockets, drops to an
unprivileged account for good (:func:`drop_privileges`), checks that it did
(:func:`unprivileged_problem`) and serves the clients. A client that finds a
bug in the request handling then holds an account that can read sysfs and
ask for exports, nothing more.

Lifecycle, as systemd sees the monitor (the main PID):

* ``READY=1`` once the network process said ``READY`` (every socket bound);
* the network process exits: the monitor exits with a failure status, and
  systemd restarts the service (attachments live in the kernel and survive);
* SIGTERM, SIGINT: forwarded, both exit 0;
* SIGHUP: ``RELOADING=1``; the configuration is loaded again by the code that
  loaded it at start; an error is one log line and the running process is
  kept (``READY=1`` again once that process serves: at once, unless it is
  itself still starting); otherwise the rules are applied, the running
  network process stops listening, finishes what is in flight and exits, and
  a new one starts (``READY=1`` once it serves). Exports already in the
  kernel are untouched.
* with ``WatchdogSec=`` (``WATCHDOG_USEC`` in the environment): the network
  process sends ``PING`` every third of that interval and the monitor sends
  ``WATCHDOG=1`` for each one it answers. The channel is the network
  process's to speak on first, so a stuck event loop (or a stuck monitor)
  stops the pings, systemd sees no ``WATCHDOG=1`` within the interval and
  restarts the service.

Started by another user the monitor cannot drop anything: the same two
processes run, the network process keeping the caller's uid.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import UsbipError
from .ownership import PRUNE_SECONDS
from .privsep import RULES_INTERVAL, Dispatcher

log = logging.getLogger("usbipd")

#: The account the network process runs as when ``user`` is not configured, if it exists...
DEFAULT_ACCOUNT = "usbip"
#: ...and the one used (with a warning) when it does not.
FALLBACK_ACCOUNT = "nobody"
#: Seconds a stopping network process gets to finish in-flight requests before it is killed.
STOP_SECONDS = 5.0
#: <linux/prctl.h>
PR_SET_NO_NEW_PRIVS = 38
#: The shortest interval between two PINGs of the network process, whatever the watchdog interval.
MIN_PING_SECONDS = 0.05
#: Signals the monitor acts on; blocked across a fork so that the child never runs the monitor's handlers.
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


# -- the account -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Account:
    """The unprivileged account of the network process."""

    name: str
    uid: int
    gid: int


def account(name: Optional[str]) -> Account:
    """The account ``user`` names; unset: ``usbip`` if it exists, else ``nobody`` (with a warning)."""
    import pwd  # noqa: PLC0415 - only when started as root

    if name is None:
        try:
            entry = pwd.getpwnam(DEFAULT_ACCOUNT)
        except KeyError:
            try:
                entry = pwd.getpwnam(FALLBACK_ACCOUNT)
            except KeyError:
                raise UsbipError("user: neither %s nor %s exists to run the network process as"
                                 % (DEFAULT_ACCOUNT, FALLBACK_ACCOUNT),
                                 hint="useradd --system --no-create-home %s" % DEFAULT_ACCOUNT) from None
            log.warning("no account %s: the network process runs as %s (create %s or set user: in usbipd.yml)",
                        DEFAULT_ACCOUNT, FALLBACK_ACCOUNT, DEFAULT_ACCOUNT)
    else:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise UsbipError("user: no account %s on this system" % name,
                             hint="useradd --system --no-create-home %s" % name) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise UsbipError("user: %s has uid or gid 0; the network process needs an unprivileged account"
                         % entry.pw_name)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def drop_privileges(target: Account, status_path: str = "/proc/self/status") -> None:
    """Become ``target`` for good: no supplementary groups, every uid and gid, no new privileges.

    Then read back what the kernel says and refuse to go on unless the uid is
    not 0 and no capability is left. ``prctl`` is looked up first: ctypes
    comes from the standard library, which may be readable by root only.
    """
    prctl = _prctl()
    try:
        os.setgroups([])
        os.setresgid(target.gid, target.gid, target.gid)
        os.setresuid(target.uid, target.uid, target.uid)
    except OSError as err:
        raise UsbipError("cannot drop privileges to %s: %s" % (target.name, err.strerror)) from None
    no_new_privs(prctl)
    try:
        with open(status_path) as f:
            status = f.read()
    except OSError as err:
        raise UsbipError("cannot check the dropped privileges in %s: %s" % (status_path, err.strerror)) from None
    problem = unprivileged_problem(status)
    if problem:
        raise UsbipError("refusing to serve: the network process is still privileged (%s)" % problem)


def _prctl() -> Optional[Callable[..., int]]:
    """The C library's ``prctl``, or None (logged at debug level) where there is none to call."""
    try:
        import ctypes  # noqa: PLC0415

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError) as err:
        log.debug("PR_SET_NO_NEW_PRIVS not set: no prctl (%s)", err)
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl


def no_new_privs(prctl: Optional[Callable[..., int]] = None) -> bool:
    """``prctl(PR_SET_NO_NEW_PRIVS)``: nothing this process executes can gain privileges. Optional.

    Without a C library to call (or on a kernel that refuses), the drop still
    stands; the fact is logged at debug level.
    """
    prctl = prctl or _prctl()
    if prctl is None:
        return False
    if prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        import ctypes  # noqa: PLC0415 - imported by _prctl already

        log.debug("PR_SET_NO_NEW_PRIVS not set: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def unprivileged_problem(status: str) -> Optional[str]:
    """What in a ``/proc/<pid>/status`` text shows privilege, or None.

    Privilege is a uid or gid 0, a supplementary group, a capability, or
    ``NoNewPrivs`` other than 1 (without it, a set-uid program the process
    ran would gain what the drop took away).
    """
    fields = {}
    for line in status.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.split()
    problems = []
    for key in ("Uid", "Gid"):
        ids = fields.get(key)
        if not ids or "0" in ids:
            problems.append("%s %s" % (key, " ".join(ids or ["missing"])))
    if fields.get("Groups"):
        problems.append("supplementary groups %s" % " ".join(fields["Groups"]))
    for key in ("CapEff", "CapPrm", "CapAmb"):
        value = fields.get(key, ["missing"])
        if key == "CapAmb" and key not in fields:
            continue  # kernels before 4.3
        try:
            if int(value[0], 16) != 0:
                problems.append("%s %s" % (key, value[0]))
        except (ValueError, IndexError):
            problems.append("%s %s" % (key, " ".join(value)))
    if fields.get("NoNewPrivs") != ["1"]:
        problems.append("NoNewPrivs %s" % " ".join(fields.get("NoNewPrivs") or ["missing"]))
    return ", ".join(problems) or None


def require_readable(paths: Sequence[str], who: Account) -> None:
    """After the drop: the network process must read these trees (sysfs), or it would fail every request."""
    for path in paths:
        if not os.access(path, os.R_OK | os.X_OK):
            raise UsbipError("the network process (user %s) cannot read %s" % (who.name, path),
                             hint="a sysfs tree other than /sys must be readable by that account")


# -- the monitor -----------------------------------------------------------------------------
@dataclasses.dataclass
class Service:
    """One loaded configuration: what the monitor needs to run a network process with it.

    ``network(channel, ready_fd, ping_seconds)`` is the body of the network
    process (it returns the exit status; it sends ``PING`` every
    ``ping_seconds`` unless that is None); ``account`` is None when there is
    nothing to drop (not started as root); ``peer_allowed(address)`` says
    whether the configuration's allow-list admits a client address (checked
    again on every ``EXPORT``); ``ownership`` (a
    :class:`usbip.daemon.ownership.Ownership`, or None) keeps the records of
    who holds each exported device.
    """

    exporter: Any
    modes: Sequence[str]
    apply_rules: Callable[[], object]
    network: Callable[[socket.socket, Optional[int], Optional[float]], int]
    account: Optional[Account] = None
    peer_allowed: Callable[[Any], bool] = lambda address: True
    description: str = ""
    #: Releases what the configuration holds (the TLS context and its key log); called once, by :meth:`release`.
    close: Callable[[], object] = lambda: None
    ownership: Any = None
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.close()


@dataclasses.dataclass
class _Child:
    pid: int
    channel: socket.socket
    service: Service
    dispatcher: Dispatcher
    ready: bool = False
    deadline: Optional[float] = None  # set when it was told to stop
    killed: bool = False


def describe_exit(status: int) -> str:
    """``exited with status N`` or ``killed by signal NAME`` from a wait status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return "killed by signal %s" % name
    return "exited with status %d" % os.WEXITSTATUS(status)


class Monitor:
    """The privileged process: forks the network process, answers it, restarts it on reload.

    ``load()`` builds a :class:`Service` from the configuration, the code run
    at start; ``notifier`` has ``notify(*assignments)`` and ``reloading()``
    (``usbip.cli.systemd``); ``ready_fd``, with ``-D``, is the pipe the
    starting process waits on (``ready`` is written to it once serving);
    ``watchdog_seconds`` is systemd's watchdog interval (None: no watchdog);
    ``rules_interval`` bounds how often a network process makes the rules
    apply (see :class:`usbip.daemon.privsep.Dispatcher`).
    """

    def __init__(self, load: Callable[[], Service], notifier: Any, ready_fd: Optional[int] = None,
                 stop_seconds: float = STOP_SECONDS, watchdog_seconds: Optional[float] = None,
                 rules_interval: float = RULES_INTERVAL) -> None:
        self.load = load
        self.notifier = notifier
        self.ready_fd = ready_fd
        self.stop_seconds = stop_seconds
        self.rules_interval = rules_interval
        #: How often the network process sends PING: a third of the watchdog interval, None without one.
        self.ping_seconds = max(MIN_PING_SECONDS, watchdog_seconds / 3) if watchdog_seconds else None
        self.children: Dict[int, _Child] = {}
        self.current: Optional[_Child] = None
        self.pending: Optional[Service] = None
        self.stopping = False
        self.status = 0
        self.selector = selectors.DefaultSelector()
        self._wakeup: List[int] = []
        #: Every configuration a network process was started with (released at the end).
        self._spawned: List[Service] = []
        #: When the export records are next pruned (a :func:`time.monotonic` time).
        self.prune_at = time.monotonic() + PRUNE_SECONDS

    # -- run -------------------------------------------------------------------------------
    def run(self, service: Service) -> int:
        """Serve until told to stop (0) or until the network process fails (1)."""
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup = [read_end, write_end]
        previous = {signum: signal.signal(signum, _no_op) for signum in _SIGNALS}
        old_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self.selector.register(read_end, selectors.EVENT_READ, None)
        try:
            service.apply_rules()
            self.current = self._spawn(service)
            self.current.dispatcher.prune()  # a restarted daemon: keep the holders the kernel still serves
            while not (self.stopping and not self.children):
                for key, _events in self.selector.select(self._timeout()):
                    if key.data is None:
                        self._signals(read_end)
                    else:
                        self._message(key.data)
                self._enforce_deadlines()
                for child in list(self.children.values()):
                    if child.deadline is None:
                        child.dispatcher.run_due()
                self._prune_due()
            return self.status
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for child in list(self.children.values()):  # only when the loop itself failed
                self._kill(child, signal.SIGKILL)
                try:
                    os.waitpid(child.pid, 0)
                except ChildProcessError:
                    pass
            self.selector.close()
            for fd in self._wakeup:
                os.close(fd)
            self._close_ready_fd()
            for loaded in [service, self.pending] + self._spawned:
                if loaded is not None:
                    loaded.release()

    def _timeout(self) -> Optional[float]:
        deadlines = [c.deadline for c in self.children.values() if c.deadline is not None and not c.killed]
        deadlines += [c.dispatcher.due() for c in self.children.values()
                      if c.deadline is None and c.dispatcher.due() is not None]
        if self.current is not None and self.current.service.ownership is not None:
            deadlines.append(self.prune_at)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _prune_due(self) -> None:
        """Every :data:`PRUNE_SECONDS`: drop the records of devices the kernel freed (a detach, a release)."""
        now = time.monotonic()
        if now < self.prune_at:
            return
        self.prune_at = now + PRUNE_SECONDS
        if self.current is not None and self.current.deadline is None:
            self.current.dispatcher.prune()

    # -- the network process -------------------------------------------------------------
    def _spawn(self, service: Service) -> _Child:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        _flush()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
        except OSError as err:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            ours.close()
            theirs.close()
            raise UsbipError("cannot start the network process: %s" % err.strerror) from None
        if pid == 0:  # the network process: never returns
            status = 1
            try:
                self._forget_in_child(ours, blocked)
                status = service.network(theirs, self.ready_fd, self.ping_seconds)
            except SystemExit as done:
                status = done.code if isinstance(done.code, int) else 1
            except BaseException:  # noqa: B036 - the child must reach os._exit, whatever happens
                log.exception("the network process failed")
            finally:
                _flush()
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        theirs.close()
        ours.setblocking(False)
        self._spawned.append(service)
        child = _Child(pid, ours, service, None)
        child.dispatcher = Dispatcher(service.exporter, service.modes, service.apply_rules,
                                      lambda: self._ready(child), on_ping=lambda: self._pinged(child),
                                      peer_allowed=service.peer_allowed, rules_interval=self.rules_interval,
                                      ownership=service.ownership)
        self.children[pid] = child
        self.selector.register(ours, selectors.EVENT_READ, child)
        log.debug("network process %d started%s", pid,
                  " (it runs as %s)" % service.account.name if service.account else
                  " (not started as root: no privileges to drop, it keeps uid %d)" % os.getuid())
        return child

    def _forget_in_child(self, ours: socket.socket, blocked) -> None:
        """In the new network process: nothing of the monitor's loop, signals as a plain program has them."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the monitor's business
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        ours.close()
        for child in self.children.values():
            child.channel.close()
        self.selector.close()
        for fd in self._wakeup:
            os.close(fd)
        self._wakeup = []

    def _ready(self, child: _Child) -> None:
        if child.ready or child.deadline is not None:
            return
        child.ready = True
        if child is not self.current:
            return
        who = child.service.account.name if child.service.account else "uid %d" % os.getuid()
        log.info("network process %d serving as %s", child.pid, who)
        self.notifier.notify("READY=1", "STATUS=serving %s; network process %d as %s"
                             % (child.service.description or "devices", child.pid, who))
        if self.ready_fd is not None:
            try:
                os.write(self.ready_fd, b"ready\n")
            except OSError:
                pass
            self._close_ready_fd()

    def _pinged(self, child: _Child) -> None:
        """A PING answered: the serving network process's loop runs, and so does this one's."""
        if child is self.current and child.ready and not self.stopping:
            self.notifier.notify("WATCHDOG=1")

    def _close_ready_fd(self) -> None:
        if self.ready_fd is not None:
            try:
                os.close(self.ready_fd)
            except OSError:
                pass
            self.ready_fd = None

    def _message(self, child: _Child) -> None:
        if self.children.get(child.pid) is not child:
            return  # reaped by a signal handled in the same round
        if not child.dispatcher.receive(child.channel):
            self._unregister(child)  # the end of its stream; its exit is reaped apart

    # -- signals ---------------------------------------------------------------------------
    def _signals(self, read_end: int) -> None:
        try:
            received = os.read(read_end, 512)
        except (BlockingIOError, InterruptedError):
            return
        for signum in dict.fromkeys(received):  # each kind once, in order
            if signum == signal.SIGCHLD:
                self._reap()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    log.info("shutting down")
                self._stop(0)
            elif signum == signal.SIGHUP:
                self._reload()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self._forget(child)
            if child is self.current:
                self.current = None
                if self.stopping:
                    continue
                # Before READY the network process has said why itself (one line); after, this is news.
                if child.ready or not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1):
                    log.error("the network process %d %s; stopping (the service manager restarts usbipd)",
                              pid, describe_exit(status))
                self._stop(1)
            else:
                log.debug("network process %d %s", pid, describe_exit(status))
                if child.service is not self.pending and not any(
                        c.service is child.service for c in self.children.values()):
                    child.service.release()
                    self._spawned = [s for s in self._spawned if not s.released]
                if self.pending is not None and not self.stopping and not self.children:
                    service, self.pending = self.pending, None
                    self.current = self._spawn(service)

    def _forget(self, child: _Child) -> None:
        self._unregister(child)
        child.channel.close()

    def _unregister(self, child: _Child) -> None:
        try:
            self.selector.unregister(child.channel)
        except (KeyError, ValueError):
            pass

    def _stop(self, status: int) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.status = status
        self.notifier.notify("STOPPING=1")
        for child in self.children.values():
            self._terminate(child)

    def _terminate(self, child: _Child) -> None:
        if child.deadline is None:
            child.deadline = time.monotonic() + self.stop_seconds
            child.dispatcher.cancel_due()  # the rules of a network process on its way out are not applied later
            self._kill(child, signal.SIGTERM)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.deadline is not None and not child.killed and now >= child.deadline:
                log.warning("network process %d did not stop in %g s: killed", child.pid, self.stop_seconds)
                child.killed = True
                self._kill(child, signal.SIGKILL)

    @staticmethod
    def _kill(child: _Child, signum: int) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    # -- reload ----------------------------------------------------------------------------
    def _reload(self) -> None:
        """SIGHUP: the configuration again, through the code that loaded it at start."""
        if self.stopping:
            return
        self.notifier.reloading()
        service = None
        try:
            service = self.load()
            service.apply_rules()
        except UsbipError as err:
            if service is not None:
                service.release()
            log.error("reload refused, still serving the previous configuration: %s", err)
            # READY=1 ends the reload for systemd. If the running network process has not said READY yet (a
            # reload early in the start, or right after another reload), _ready sends it once that process serves.
            if self.current is not None and self.current.ready:
                self.notifier.notify("READY=1")
            return
        log.info("reloading: a new network process takes over")
        if self.pending is not None:
            self.pending.release()
        self.pending = service
        if self.current is not None:
            self._terminate(self.current)
            self.current = None
        if not self.children:
            self.pending = None
            self.current = self._spawn(service)


def _no_op(signum, frame) -> None:
    """The signal is read from the wakeup pipe; a Python handler must exist for it to be written."""


def _flush() -> None:
    """Before a fork or an exit of the child: nothing buffered twice, nothing lost."""
    for handler in logging.getLogger("usbipd").handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - a broken log stream must not stop a fork
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
