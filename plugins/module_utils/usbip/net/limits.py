# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the server needs to stay up under a flood: descriptors.

Descriptors: every connection the server holds is a descriptor, and so is
every one it accepts only to refuse. A process that runs out fails in
``accept()``, over and over, while clients wait; so the limit is checked,
and the soft limit raised, before the first socket is bound, and a limit that
cannot hold ``max_connections`` is a start error naming both.

(The log, the other thing a flood could fill, is throttled by
:class:`usbip.throttle.LogThrottle`.)
"""

from __future__ import annotations

import resource
from typing import Any, Optional

from ..errors import UsbipError

#: Connections asyncio accepts from one listening socket per pass of the event loop. Each of them is a
#: descriptor before the server has looked at it, and a refused one is closed on a later pass: this bounds
#: the descriptors held by connections that are not yet counted against ``max_connections``.
ACCEPTS_PER_PASS = 16
#: Descriptors for everything but connections: the standard streams, the event loop's selector and wake-up
#: pair, the kernel uevent socket, the channel to the privileged process and a descriptor it hands over,
#: syslog, the pid file, status files the catalog keeps open (one per offered device: a few on any real
#: server), and what the Python runtime opens on its own. Generous on purpose: a descriptor costs little.
MARGIN = 64
#: With TLS, per pooled context: its key log (a ``memfd``) and OpenSSL's own handle on that file.
TLS_FILES_PER_CONTEXT = 2
#: With TLS, beside the contexts: the certificate, key and CA an endpoint keeps in memory files.
TLS_FILES = 4


def listening_sockets(options: Any) -> int:
    """How many listening sockets :meth:`usbip.net.server.UsbipServer.bind` opens at most for ``options``."""
    ports = int(bool(options.plain)) + int(options.tls is not None)
    addresses = len(options.addresses) if options.addresses else int(bool(options.ipv4)) + int(bool(options.ipv6))
    return ports * addresses


def descriptors_needed(options: Any) -> int:
    """Descriptors a server with ``options`` (a ``ServerOptions``) may hold at once.

    ``max_connections`` held connections; per listening socket, itself and
    the connections accepted in two passes of the loop that are not counted
    yet (refused ones are closed a pass later); with TLS, two descriptors per
    handshake in progress (each pooled context keeps its key log in a ``memfd``
    that OpenSSL holds open too; the pool grows to one context per concurrent
    handshake) and :data:`TLS_FILES`;
    and :data:`MARGIN`.
    """
    needed = options.max_connections + listening_sockets(options) * (1 + 2 * ACCEPTS_PER_PASS) + MARGIN
    if options.tls is not None:
        needed += TLS_FILES_PER_CONTEXT * options.tls.config.max_handshakes + TLS_FILES
    return needed


def ensure_descriptors(needed: int, max_connections: Optional[int] = None) -> int:
    """Raise the soft RLIMIT_NOFILE to ``needed`` if it is below (never lower it); returns the soft limit.

    A hard limit below ``needed`` is a :class:`UsbipError`: only the
    service manager (``LimitNOFILE=``) or root can raise it, and a server
    that starts anyway fails at its first burst of clients instead.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise UsbipError(_too_low(hard, needed, max_connections))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (OSError, ValueError) as err:
        raise UsbipError(_too_low(soft, needed, max_connections) + " (%s)" % err) from None
    return needed


def _too_low(limit: int, needed: int, max_connections: Optional[int]) -> str:
    if max_connections is None:
        return "the descriptor limit (%d) is below what the server needs (%d): raise LimitNOFILE" % (limit, needed)
    return ("the descriptor limit (%d) is below what max_connections %d needs (%d): raise LimitNOFILE or lower"
            " max_connections" % (limit, max_connections, needed))
