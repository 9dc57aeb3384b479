# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The daemons' logging: it never blocks the code that logs.

A daemon's stderr is a pipe (to the journal, to a supervisor, to a terminal
paused with ^S) and its syslog socket can fill up; a write to either blocks
while the reader lags. Logging straight from the event loop would then stop
the loop, and with it every client, for as long as the reader sleeps. So a
record only goes into a bounded queue, and one thread writes the queue out:
a full queue drops the record and counts it, and once the writer has caught
up it says how many lines were dropped.

Lines keep the C tools' shape (``usbipd: warning: ...``). When stderr is
the journal (``JOURNAL_STREAM``, see :func:`usbip.cli.systemd.stderr_is_journal`),
each line starts with its syslog priority (``<4>``, sd-daemon(3)) so that
``journalctl -p warning`` selects by level.

The writer is a thread, and threads do not survive ``fork()``: a forked
child that goes on logging calls :func:`after_fork` first. :func:`stop`
writes out what is queued (bounded in time) before the program exits.

A fork must also not copy a stream in the middle of a write: the locks a
buffered stream holds while it writes would be copied held, by a thread the
child does not have, and the child's first line would wait forever. So the
writer holds its own lock across each write, and a fork first takes that
lock (waiting :data:`FORK_WAIT_SECONDS` at most for the line being written),
forks between two lines, and gives it back in the parent; the child starts
with a new, free lock.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import sys
import threading
from typing import Any, Optional, TextIO

from . import systemd

#: Where the local syslog daemon listens.
SYSLOG_SOCKET = "/dev/log"
#: Records waiting for the writer; more are dropped (and counted) until it catches up.
QUEUE_RECORDS = 10000
#: How long :func:`stop` waits for the writer to write what is queued.
STOP_SECONDS = 2.0
#: How long a fork waits for the writer to finish the line it is writing. A log reader stuck for longer
#: does not stop the fork: the child may then lose its log lines (its writer waits), never its work.
FORK_WAIT_SECONDS = 5.0
#: Syslog priorities of the levels (sd-daemon(3) prefixes).
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
_DEBUG_PRIORITY = 7
_STOP = object()


def priority(levelno: int) -> int:
    """The syslog priority of a :mod:`logging` level: 3 error, 4 warning, 6 info, 7 debug."""
    for level, value in _PRIORITIES:
        if levelno >= level:
            return value
    return _DEBUG_PRIORITY


class _Formatter(logging.Formatter):
    """Levels in lower case (``error``, ``info``), as the C tools print them; optionally ``<N>`` per line."""

    def __init__(self, fmt: str, journal: bool = False) -> None:
        super().__init__(fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.levelname = record.levelname.lower()
        text = super().format(record)
        if self.journal:
            # The journal reads the prefix of every line it receives: a traceback keeps its level.
            prefix = "<%d>" % priority(record.levelno)
            text = "\n".join(prefix + line for line in text.split("\n"))
        return text


class _Enqueue(logging.handlers.QueueHandler):
    """Puts records on the writer's queue without waiting; counts those a full queue refuses."""

    def __init__(self, records: queue.Queue) -> None:
        super().__init__(records)
        #: Records dropped since the set-up (the writer reports the increase).
        self.dropped = 0
        self._lock = threading.Lock()

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def renew_lock(self) -> None:
        """After a fork: the parent's thread may have held the lock, and that thread is gone."""
        self._lock = threading.Lock()


class _Writer:
    """The thread that writes queued records to the real handler (stderr or syslog)."""

    def __init__(self, records: queue.Queue, target: logging.Handler, source: _Enqueue, name: str) -> None:
        self.records = records
        self.target = target
        self.source = source
        self.name = name
        self.reported = source.dropped
        #: Held across each write, and by a fork (see the module's docstring).
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="log writer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while True:
            record = self.records.get()
            if record is _STOP:
                break
            self._write(record)
            if self.records.empty():
                self._report_dropped()
        self._report_dropped()

    def _write(self, record: logging.LogRecord) -> None:
        if record.levelno >= self.target.level:
            with self.lock:
                self.target.handle(record)

    def _report_dropped(self) -> None:
        total = self.source.dropped
        dropped, self.reported = total - self.reported, total
        if dropped:
            self._write(logging.LogRecord(self.name, logging.WARNING, __file__, 0,
                                          "%d log lines dropped (the log could not keep up)", (dropped,), None))

    def stop(self, timeout: float) -> bool:
        """Ask the thread to finish once the queue is written; returns whether it did within ``timeout``."""
        if not self.thread.is_alive():
            return True
        try:
            self.records.put(_STOP, timeout=timeout)
        except queue.Full:
            return False
        self.thread.join(timeout)
        return not self.thread.is_alive()


class _Setup:
    """What :func:`setup` built, for :func:`after_fork` and :func:`stop`."""

    def __init__(self, logger: logging.Logger, handler: _Enqueue, target: logging.Handler, writer: _Writer) -> None:
        self.logger = logger
        self.handler = handler
        self.target = target
        self.writer = writer


_current: Optional[_Setup] = None


def setup(logger_name: str, prog: str, debug: bool = False, syslog: bool = False,
          stream: Optional[TextIO] = None) -> logging.Logger:
    """Route the logger ``logger_name`` through the queue to stderr (or ``stream``), or to syslog.

    Lines read ``<prog>: <level>: <message>`` (``<prog>[<pid>]: ...`` to
    syslog); without a reachable syslog socket they go to stderr rather than
    nowhere. Replaces an earlier set-up (its queue is written out first).
    Returns the logger.
    """
    stop()
    target: Optional[logging.Handler] = None
    if syslog and os.path.exists(SYSLOG_SOCKET):
        try:
            target = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET)
        except OSError:
            target = None
        # Python 3.11 and later keep a handler whose connection failed and report each record as a logging error.
        sock = getattr(target, "socket", None)
        if target is not None and (sock is None or sock.fileno() < 0):
            target.close()
            target = None
        if target is not None:
            target.setFormatter(_Formatter(prog + "[%(process)d]: %(levelname)s: %(message)s"))
    if target is None:
        out = sys.stderr if stream is None else stream
        target = logging.StreamHandler(out)
        target.setFormatter(_Formatter(prog + ": %(levelname)s: %(message)s", journal=_is_fd2(out)
                                       and systemd.stderr_is_journal()))
    records: queue.Queue = queue.Queue(QUEUE_RECORDS)
    handler = _Enqueue(records)
    log = logging.getLogger(logger_name)
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    writer = _Writer(records, target, handler, logger_name)
    writer.start()
    global _current
    _current = _Setup(log, handler, target, writer)
    return log


def after_fork() -> None:
    """In a forked child: a new queue and writer thread (the parent's thread is not in the child).

    Records the parent had queued stay the parent's to write: the child's
    queue starts empty, so no line is written twice. (The handlers' locks are
    reinitialized in the child by :mod:`logging` itself; the fork happened
    between two lines, so the stream is not left in the middle of a write,
    and the new writer has a new, free lock.)
    """
    current = _current
    if current is None:
        return
    records: queue.Queue = queue.Queue(QUEUE_RECORDS)
    current.handler.queue = records
    current.handler.renew_lock()
    current.writer = _Writer(records, current.target, current.handler, current.logger.name)
    current.writer.start()


#: The writer's lock the forking thread took in :func:`_before_fork` (None if none was taken).
_held_over_fork: Optional[threading.Lock] = None


def _before_fork() -> None:
    """Fork between two lines: wait for the writer to finish the one it writes, and keep it from the next."""
    global _held_over_fork
    current = _current
    if current is not None and current.writer.thread.is_alive():
        lock = current.writer.lock
        if lock.acquire(timeout=FORK_WAIT_SECONDS):
            _held_over_fork = lock


def _after_fork_in_parent() -> None:
    global _held_over_fork
    lock, _held_over_fork = _held_over_fork, None
    if lock is not None:
        lock.release()


def _after_fork_in_child() -> None:
    """The child's copy of the lock is held (by this thread, or by a writer the child does not have): a new one."""
    global _held_over_fork
    _held_over_fork = None
    if _current is not None:
        _current.writer.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def stop(timeout: float = STOP_SECONDS) -> bool:
    """Write out what is queued (waiting at most ``timeout`` seconds) and stop the writer.

    Returns whether everything queued was written. If it was, later records
    (at exit) are written directly; if the writer is stuck, they are queued
    and dropped, so that the caller never blocks on the log.
    """
    global _current
    current, _current = _current, None
    if current is None:
        return True
    done = current.writer.stop(timeout)
    if done:
        current.target.flush()
        if current.logger.handlers == [current.handler]:
            current.logger.handlers[:] = [current.target]
    return done


def dropped() -> int:
    """Records dropped since :func:`setup` (for tests and status lines)."""
    return _current.handler.dropped if _current is not None else 0


def _is_fd2(stream: Any) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False
