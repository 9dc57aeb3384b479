# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the command-line tests: captured results, a fake usbipd.

They live in a module of their own (not in ``conftest.py``) so that test
modules can import them by a name no other test directory uses.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable, List


class Result:
    def __init__(self, rc: int, out: str, err: str) -> None:
        self.rc, self.out, self.err = rc, out, err

    @property
    def err_lines(self) -> List[str]:
        return self.err.splitlines()


def recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class FakeServer:
    """A usbipd stand-in on 127.0.0.1 that runs ``handler(conn)`` for each connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.connections = 0
        self.errors: List[BaseException] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(10)
                try:
                    self.handler(conn)
                except BaseException as err:  # reported by the test through .errors
                    self.errors.append(err)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
