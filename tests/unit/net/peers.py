# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A scripted server on 127.0.0.1 for the client's and the supervisor's tests.

Each test says how the server treats one connection (``behave``): never
answer, answer an empty device list, trickle a reply, claim too much. The
accept loop, the thread per connection and the clean shutdown are the same
for all of them, and live here once.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable, List

Behaviour = Callable[[socket.socket, threading.Event], None]


class PeerServer:
    """Runs ``behave(conn, stop)`` for each connection, in a thread of its own, until :meth:`close`.

    ``accepted`` is set at the first connection; ``served`` counts the
    connections whose ``behave`` returned.
    """

    def __init__(self, behave: Behaviour) -> None:
        self.behave = behave
        self.stop = threading.Event()
        self.accepted = threading.Event()
        self.served = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.threads: List[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted.set()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.behave(conn, self.stop)
                self.served += 1
            except OSError:
                pass  # the client gave up first: what the tests of bounds want

    def close(self) -> None:
        self.stop.set()
        self._accepting.join(5)
        for thread in self.threads:
            thread.join(5)
        self.sock.close()


def never_answer(conn: socket.socket, stop: threading.Event) -> None:
    """Hold the connection open and say nothing until the server closes."""
    stop.wait()
