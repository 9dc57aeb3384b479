"""The sd_notify side of the daemons: what reaches a notification socket, and the journal check."""

import os
import socket

from usbip.cli import systemd


def _listener(tmp_path, abstract=False):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = "usbip-test-%d" % os.getpid()
        sock.bind("\0" + name)
        return sock, "@" + name
    path = str(tmp_path / "notify")
    sock.bind(path)
    return sock, path


def test_ready_reaches_the_socket(tmp_path):
    sock, address = _listener(tmp_path)
    with sock:
        assert systemd.notify("READY=1", "STATUS=serving\nnow", environ={"NOTIFY_SOCKET": address})
        assert sock.recv(1024) == b"READY=1\nSTATUS=serving now"


def test_abstract_namespace_addresses(tmp_path):
    sock, address = _listener(tmp_path, abstract=True)
    with sock:
        assert systemd.notify("STOPPING=1", environ={"NOTIFY_SOCKET": address})
        assert sock.recv(1024) == b"STOPPING=1"


def test_without_systemd_nothing_is_sent():
    assert not systemd.notify("READY=1", environ={})
    assert not systemd.notify("READY=1", environ={"NOTIFY_SOCKET": "relative/path"})


def test_a_vanished_socket_is_not_an_error(tmp_path):
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_journal_stream_must_be_our_stderr():
    status = os.fstat(2)
    assert systemd.stderr_is_journal({"JOURNAL_STREAM": "%d:%d" % (status.st_dev, status.st_ino)})
    assert not systemd.stderr_is_journal({"JOURNAL_STREAM": "%d:%d" % (status.st_dev, status.st_ino + 1)})
    assert not systemd.stderr_is_journal({"JOURNAL_STREAM": "x:y"})
    assert not systemd.stderr_is_journal({})
