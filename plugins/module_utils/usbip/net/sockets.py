# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Socket options both ends set before a socket becomes the kernel's.

Once imported (client) or exported (server), a connection is served by the
kernel until it closes; it must notice a vanished peer by itself, so the
options are set while the socket is still ours, on both ends alike.
"""

from __future__ import annotations

import socket

#: Keepalive timings handed to the kernel with the socket. An idle attachment
#: whose peer vanished is probed after KEEPIDLE s, then every KEEPINTVL s, and
#: dropped after KEEPCNT unanswered probes: 10 + 5 * 3 = 25 s. USER_TIMEOUT
#: bounds unacknowledged data the same way while URBs are in flight. Either
#: way vhci sees the connection close and frees the port well under a minute.
KEEPIDLE = 10
KEEPINTVL = 5
KEEPCNT = 3
USER_TIMEOUT_MS = 25000


def tune(sock: socket.socket) -> None:
    """Socket options the kernel inherits with the socket (see KEEPIDLE)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPIDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPINTVL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPCNT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
