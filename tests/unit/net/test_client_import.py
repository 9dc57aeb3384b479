# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An import in two steps, on 127.0.0.1: the connection first (what a caller makes before its lock), the
request after, within one deadline."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from usbip.errors import UsbipError
from usbip.net import client
from usbip.protocol import ImportRequest


class RecordingServer:
    """Accepts one connection on 127.0.0.1 and records what it receives until the client closes it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _peer = self.sock.accept()
        with conn:
            conn.settimeout(5)
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                self.received += data
                if len(self.received) >= len(ImportRequest("1-1").encode()):
                    time.sleep(5)  # an import that is never answered
        self.closed.set()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    running = RecordingServer()
    yield running
    running.close()


def test_a_connection_closed_without_an_import_sends_nothing(server):
    with client.open_import("127.0.0.1", server.port, timeout=5):
        pass
    assert server.closed.wait(5)
    assert server.received == b""


def test_the_import_has_what_the_connection_left_of_the_deadline(server):
    started = time.monotonic()
    connection = client.open_import("127.0.0.1", server.port, timeout=1.0)
    time.sleep(0.5)  # waiting for a lock, say
    with pytest.raises(client.NoReply, match=r"no complete reply from 127\.0\.0\.1:%d in 1 s$" % server.port):
        connection.import_device("1-1")
    assert 0.9 < time.monotonic() - started < 1.5
    assert server.received == ImportRequest("1-1").encode()
    with pytest.raises(UsbipError, match="the connection to 127.0.0.1:%d is closed" % server.port):
        connection.import_device("1-1")  # a failed import closed it


@pytest.mark.parametrize("seconds, shown", [(20, "20"), (1.5, "1.5"), (2.99996, "3"), (0.5, "0.5")])
def test_deadlines_show_as_they_were_set(seconds, shown):
    assert client._seconds(seconds) == shown  # noqa: SLF001
