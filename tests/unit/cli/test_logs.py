# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The daemons' logging (``usbip.cli.logs``): lines in the C tools' shape, written by a thread.

* A reader that does not read (a full pipe) never blocks the code that
  logs: records past the queue are dropped and counted, and the count is
  logged once the writer catches up.
* ``<N>`` priority prefixes only when stderr is the journal's stream.
* A forked child logs after :func:`after_fork` (the writer thread is not
  inherited); :func:`stop` writes out what is queued.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from tests.fuzz import MODULE_UTILS
from usbip.cli import logs
from usbip.cli.common import EXIT_OK, run_program, setup_logging


@pytest.fixture(autouse=True)
def stopped():
    yield
    logs.stop()
    logging.getLogger("logs-test").handlers[:] = []


def _run(script: str, env_extra=None, stderr_path=None) -> str:
    """Run ``script`` with the stack on the path; returns what it wrote to stderr."""
    env = dict(os.environ, PYTHONPATH=MODULE_UTILS)
    env.pop("JOURNAL_STREAM", None)
    env.update(env_extra or {})
    with open(stderr_path, "w+b") as err:
        done = subprocess.run([sys.executable, "-c", script], stderr=err, stdout=subprocess.PIPE, env=env,
                              timeout=30, check=False)
        err.seek(0)
        text = err.read().decode()
    assert done.returncode == 0, text
    return text


def test_lines_keep_the_c_tools_shape_and_stop_writes_out_the_queue(tmp_path):
    with open(tmp_path / "log", "w") as stream:
        log = logs.setup("logs-test", "usbipd", stream=stream)
        log.debug("not shown")
        log.info("listening on %s port %d", "127.0.0.1", 3240)
        log.warning("connection from %s refused: %s", "10.0.0.7:4000", "not in the allowed client networks")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("internal error serving %s", "10.0.0.7:4001")
        assert logs.stop()
    lines = (tmp_path / "log").read_text().splitlines()
    assert lines[:3] == [
        "usbipd: info: listening on 127.0.0.1 port 3240",
        "usbipd: warning: connection from 10.0.0.7:4000 refused: not in the allowed client networks",
        "usbipd: error: internal error serving 10.0.0.7:4001",
    ]
    assert lines[3] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"


def test_debug_shows_debug_lines(tmp_path):
    with open(tmp_path / "log", "w") as stream:
        logs.setup("logs-test", "usbip-attachd", debug=True, stream=stream).debug("attempt %d", 1)
        logs.stop()
    assert (tmp_path / "log").read_text() == "usbip-attachd: debug: attempt 1\n"


def test_a_full_pipe_drops_and_counts_instead_of_blocking(monkeypatch):
    monkeypatch.setattr(logs, "QUEUE_RECORDS", 100)
    read_end, write_end = os.pipe()
    stream = open(write_end, "w", buffering=1)
    received = []
    reader = threading.Thread(target=lambda: received.extend(iter(lambda: os.read(read_end, 1 << 16), b"")))
    try:
        log = logs.setup("logs-test", "usbipd", stream=stream)

        def produce() -> None:
            for n in range(5000):  # about 1 MB: the pipe (64 kB) and the queue fill up, nobody reads
                log.warning("%d %s", n, "x" * 200)

        producer = threading.Thread(target=produce, daemon=True)  # a thread: a blocked one fails, not hangs
        started = time.monotonic()
        producer.start()
        producer.join(5)
        elapsed = time.monotonic() - started
        assert not producer.is_alive(), "logging blocked"
        dropped = logs.dropped()
        # Now a reader: the writer catches up and says how many lines it never got.
        reader.start()
        assert logs.stop(timeout=10)
    finally:
        if reader.ident is None:
            reader.start()
        stream.close()
        reader.join(5)
        os.close(read_end)
    assert elapsed < 2.0, "logging blocked for %.1f s" % elapsed
    assert 4000 < dropped < 5000
    lines = b"".join(received).decode().splitlines()
    written = [int(line.split()[2]) for line in lines if line.endswith("xxx")]
    assert written == sorted(written) and len(written) == 5000 - dropped
    reports = [re.fullmatch(r"usbipd: warning: (\d+) log lines dropped \(the log could not keep up\)", line)
               for line in lines if not line.endswith("xxx")]
    assert all(reports) and sum(int(m.group(1)) for m in reports) == dropped, lines[-3:]


def test_journal_priority_prefixes_only_when_stderr_is_the_journal(tmp_path):
    script = (
        "import logging\n"
        "from usbip.cli import logs\n"
        "log = logs.setup('usbipd', 'usbipd', debug=True)\n"
        "log.debug('d'); log.info('i'); log.warning('w'); log.error('e\\nsecond line')\n"
        "logs.stop()\n")
    path = tmp_path / "stderr"
    path.write_bytes(b"")
    status = os.stat(path)
    journal = _run(script, {"JOURNAL_STREAM": "%d:%d" % (status.st_dev, status.st_ino)}, path)
    assert journal.splitlines() == ["<7>usbipd: debug: d", "<6>usbipd: info: i", "<4>usbipd: warning: w",
                                    "<3>usbipd: error: e", "<3>second line"]
    other = _run(script, {"JOURNAL_STREAM": "%d:%d" % (status.st_dev, status.st_ino + 1)}, path)
    assert other.splitlines() == ["usbipd: debug: d", "usbipd: info: i", "usbipd: warning: w", "usbipd: error: e",
                                  "second line"]


def test_priorities_of_the_levels():
    assert [logs.priority(level) for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                                               logging.CRITICAL)] == [7, 6, 4, 3, 2]


FORK = """
import os
from usbip.cli import logs
log = logs.setup('usbipd', 'usbipd')
log.info('before the fork')
pid = os.fork()
if pid == 0:
    if AFTER_FORK:
        logs.after_fork()
    log.info('in the child %d', os.getpid())
    logs.stop()
    os._exit(0)
os.waitpid(pid, 0)
log.info('in the parent')
logs.stop()
"""


def test_a_forked_child_logs_after_after_fork(tmp_path):
    text = _run("AFTER_FORK = True\n" + FORK, stderr_path=tmp_path / "stderr")
    lines = text.splitlines()
    assert lines[0] == "usbipd: info: before the fork" and lines[-1] == "usbipd: info: in the parent", text
    assert len(lines) == 3 and lines[1].startswith("usbipd: info: in the child "), text
    # Without it, the child's line waits in a queue that no thread writes.
    text = _run("AFTER_FORK = False\n" + FORK, stderr_path=tmp_path / "stderr")
    assert "in the child" not in text and text.count("\n") == 2, text


def test_after_fork_while_the_parents_writer_is_blocked_on_a_full_pipe():
    """The child's writer waits for the pipe like the parent's, no longer: both lines come once it is read."""
    script = (
        "import os\n"
        "from usbip.cli import logs\n"
        "log = logs.setup('usbipd', 'usbipd')\n"
        "for n in range(1000):\n"
        "    log.info('%d %s', n, 'z' * 200)\n"
        "import time; time.sleep(0.3)\n"  # the writer is in write(): the pipe holds 64 kB of the 200 kB
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    logs.after_fork(); log.info('child'); os._exit(0 if logs.stop(timeout=10) else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "log.info('child exit %d', os.waitstatus_to_exitcode(status)); logs.stop(timeout=10)\n")
    env = dict(os.environ, PYTHONPATH=MODULE_UTILS)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, env=env)
    try:
        time.sleep(1.0)  # nobody reads yet
        err = proc.communicate(timeout=30)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    lines = err.splitlines()
    assert "usbipd: info: child" in lines and lines[-1] == "usbipd: info: child exit 0", err[-500:]
    assert len(lines) == 1002


#: The writer blocked in the middle of a write to a buffered stream (a pipe nobody reads yet) while the main
#: thread forks. The stream's own lock is held by the writer thread during that write; a child forked then
#: would inherit it held by a thread it does not have, and its first line would wait forever.
FORK_MID_WRITE = r"""
import os, sys, threading, time
from usbip.cli import logs
read_end, write_end = os.pipe()
stream = open(write_end, "w")  # a text stream over a BufferedWriter, which locks while it writes
log = logs.setup("usbipd", "usbipd", stream=stream)
for n in range(1000):
    log.info("%d %s", n, "z" * 200)  # 200 kB: the pipe holds 64 kB, the writer blocks in write()
time.sleep(0.3)
received = []
def drain():
    time.sleep(0.5)  # the fork has started waiting (with the fix) or has happened (without it)
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            return
        received.append(chunk)
threading.Thread(target=drain, daemon=True).start()
started = time.monotonic()
pid = os.fork()
if pid == 0:
    logs.after_fork()
    log.info("child")
    os._exit(0 if logs.stop(timeout=3) else 3)
deadline = time.monotonic() + 10
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        code = os.waitstatus_to_exitcode(status)
        break
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        code = "hung"
        break
    time.sleep(0.02)
logs.stop(timeout=10)
stream.close()
time.sleep(0.2)
text = b"".join(received).decode()
print("child %s, child line %s, fork and child took %.1f s" % (code, "usbipd: info: child" in text.splitlines(),
                                                              time.monotonic() - started))
"""


def test_a_fork_while_the_writer_is_in_the_middle_of_a_write_leaves_the_child_a_usable_log():
    env = dict(os.environ, PYTHONPATH=MODULE_UTILS)
    done = subprocess.run([sys.executable, "-c", FORK_MID_WRITE], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("child 0, child line True"), done.stdout


def test_the_fork_lock_is_given_back_in_the_parent_and_new_in_the_child(tmp_path):
    with open(tmp_path / "log", "w") as stream:
        log = logs.setup("logs-test", "usbipd", stream=stream)
        writer = logs._current.writer  # noqa: SLF001
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            free = writer.lock.acquire(blocking=False)  # the copy of the old writer's lock, renewed
            logs.after_fork()
            renewed = logs._current.writer.lock.acquire(blocking=False)  # noqa: SLF001
            os.write(write_end, b"%d%d" % (free, renewed))
            os._exit(0)
        os.close(write_end)
        assert os.read(read_end, 2) == b"11"
        os.close(read_end)
        os.waitpid(pid, 0)
        assert writer.lock.acquire(blocking=False)  # released in the parent
        writer.lock.release()
        log.info("after the fork")
        assert logs.stop()
    assert (tmp_path / "log").read_text() == "usbipd: info: after the fork\n"


def test_run_program_logs_through_the_queue_and_writes_it_out_before_returning(capsys):
    def body(args) -> int:
        log = logging.getLogger("usbipd-test")
        assert isinstance(log.handlers[0], logging.handlers.QueueHandler)
        for n in range(200):
            log.info("line %d", n)
        return EXIT_OK

    class Parser:
        def parse_args(self, argv):
            return type("Args", (), {"debug": False})()

    try:
        assert run_program("usbipd-test", Parser, body, []) == EXIT_OK
    finally:
        logging.getLogger("usbipd-test").handlers[:] = []
    err = capsys.readouterr().err.splitlines()
    assert err == ["usbipd-test: info: line %d" % n for n in range(200)]


def test_setup_logging_is_the_same_set_up(tmp_path):
    log = setup_logging("logs-test", "usbipd")
    assert isinstance(log.handlers[0], logging.handlers.QueueHandler)
    assert log.level == logging.INFO and not log.propagate


def test_stop_does_not_hang_on_a_writer_that_cannot_write():
    read_end, write_end = os.pipe()
    stream = open(write_end, "w", buffering=1)
    writer = None
    try:
        log = logs.setup("logs-test", "usbipd", stream=stream)
        writer = logs._current.writer  # noqa: SLF001 - to wait for it at the end
        for _line in range(2000):
            log.warning("y" * 200)  # more than the pipe holds: the writer blocks in write()
        time.sleep(0.1)
        started = time.monotonic()
        assert not logs.stop(timeout=0.5)
        assert time.monotonic() - started < 2.0
        log.warning("after stop: queued and dropped, never written from this thread")
    finally:
        reader = threading.Thread(target=lambda: [None for _chunk in iter(lambda: os.read(read_end, 65536), b"")])
        reader.start()
        if writer is not None:
            writer.thread.join(5)  # it writes what was queued before the stop, then ends
        stream.close()
        reader.join(5)
        os.close(read_end)


def test_syslog_without_a_syslog_daemon_falls_back_to_stderr(monkeypatch, capfd):
    """No /dev/log (a container, a minimal guest): lines go to stderr, not to "--- Logging error ---"."""
    monkeypatch.setattr(logs, "SYSLOG_SOCKET", "/nonexistent/dev-log")
    log = logs.setup("usbipd-test-syslog", "usbipd", syslog=True)
    try:
        log.warning("no syslog here")
    finally:
        logs.stop()
    err = capfd.readouterr().err
    assert "usbipd: WARNING: no syslog here" in err or "usbipd: warning: no syslog here" in err
    assert "Logging error" not in err


def test_a_syslog_socket_that_refuses_falls_back_to_stderr(tmp_path, monkeypatch, capfd):
    """/dev/log exists but nobody listens (syslog stopped): Python keeps a dead handler; we do not."""
    stale = tmp_path / "dev-log"
    stale.write_text("")  # a path that exists but is no socket
    monkeypatch.setattr(logs, "SYSLOG_SOCKET", str(stale))
    log = logs.setup("usbipd-test-syslog2", "usbipd", syslog=True)
    try:
        log.warning("dead syslog")
    finally:
        logs.stop()
    err = capfd.readouterr().err
    assert "dead syslog" in err and "Logging error" not in err
