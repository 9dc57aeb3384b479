# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who holds each exported device: the monitor's records in ``/run/usbip/exports.json``.

The kernel knows that a device is in use (``usbip_status`` 2) but not by
whom: the socket it serves on is its own. The monitor, which writes every
``usbip_sockfd``, writes down the peer of each socket it hands over (and the
client's TLS certificate name when the import came over TLS), so that
``usbip list -l --json`` can say who holds a device, and a restarted daemon
still knows.

A record lives as long as the kernel shows the device in use: the monitor
drops the records of devices back to available (or gone) when it starts, on
each export, on each ``RULES`` and every :data:`PRUNE_SECONDS`. Readers
trust a record only while the device is in use, so a record the monitor has
not pruned yet is never shown.

This module is the one place that reads and writes the file: root-only
(0600 in a 0700 directory, the unit's ``RuntimeDirectory``), replaced
atomically (a temporary file renamed over it), so that a reader never sees
half a file.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
from typing import Callable, Dict, Optional, Tuple

from .. import validate
from ..device import DeviceStatus
from ..errors import InvalidArgument, UsbipError

log = logging.getLogger("usbipd")

#: Where the monitor keeps the records.
DEFAULT_PATH = "/run/usbip/exports.json"
#: Environment variable naming another file (tests, a second daemon).
PATH_ENV = "USBIP_EXPORTS_FILE"
#: Seconds between two prunes on the monitor's timer.
PRUNE_SECONDS = 5.0
#: The longest TLS certificate name recorded (and accepted on the channel).
TLS_NAME_MAX = 64
#: Records kept at most: more devices than this are not exported on one machine.
MAX_RECORDS = 1024


def default_path() -> str:
    return os.environ.get(PATH_ENV) or DEFAULT_PATH


def tls_name(value: object) -> str:
    """A TLS certificate name as recorded: a printable ASCII token without spaces, at most 64 characters."""
    if not isinstance(value, str) or not value or len(value) > TLS_NAME_MAX or \
            not all(0x21 <= ord(c) < 0x7F for c in value):
        raise InvalidArgument("invalid TLS name %r: expected printable ASCII without spaces, at most %d characters"
                              % (value if not isinstance(value, str) else value[:TLS_NAME_MAX + 1], TLS_NAME_MAX))
    return value


@dataclasses.dataclass(frozen=True)
class Holder:
    """The client a device is exported to: its address and port, its TLS name, since when (UTC)."""

    host: str
    port: int
    tls_name: Optional[str]
    since: str

    def as_json(self) -> Dict[str, object]:
        return {"host": self.host, "port": self.port, "tls_name": self.tls_name, "since": self.since}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read(path: Optional[str] = None) -> Dict[str, Holder]:
    """The records in ``path``; empty when the file is missing, unreadable or not ours (one debug line)."""
    path = path or default_path()
    try:
        with open(path, encoding="ascii") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.debug("export records in %s not read: %s", path, err)
        return {}
    return _parse(data, path)


def _parse(data: object, path: str) -> Dict[str, Holder]:
    """Each well-formed record; a malformed one is skipped (the file is root's, but stay careful)."""
    records: Dict[str, Holder] = {}
    if not isinstance(data, dict) or not isinstance(data.get("exports"), dict):
        log.debug("export records in %s not read: not a records file", path)
        return records
    for busid, entry in list(data["exports"].items())[:MAX_RECORDS]:
        try:
            busid = validate.busid(busid)
            if not isinstance(entry, dict) or not isinstance(entry.get("host"), str) or \
                    not isinstance(entry.get("since"), str) or len(entry["since"]) > 32:
                raise InvalidArgument("malformed record")
            name = entry.get("tls_name")
            records[busid] = Holder(validate.host(entry["host"]),
                                    validate.integer(entry.get("port"), "port", 0, 65535),
                                    None if name is None else tls_name(name), entry["since"])
        except InvalidArgument as err:
            log.debug("export record of %r in %s skipped: %s", busid, path, err)
    return records


class Ownership:
    """The monitor's records: ``record`` after each export, ``prune`` when the kernel may have freed devices.

    ``status(busid)`` is the exporter's status read (None, or a
    :class:`~usbip.sysfs.errors.DeviceNotFound`, when the driver no longer
    holds the device); ``clock`` gives the ``since`` text (UTC, ISO 8601
    seconds). A failure to write is logged (at most once until a write
    succeeds again) and never fails the export: the records are a report,
    the kernel is the truth.
    """

    def __init__(self, status: Callable[[str], Optional[DeviceStatus]], path: Optional[str] = None,
                 clock: Callable[[], str] = _utc_now) -> None:
        self.path = path or default_path()
        self.status = status
        self.clock = clock
        self.failing = False

    def record(self, busid: str, peer: Tuple, name: Optional[str] = None) -> Holder:
        """Write down that ``busid`` is now exported to ``peer`` (``getpeername``), over TLS as ``name``."""
        records = self._live(read(self.path))
        holder = Holder(str(peer[0]), int(peer[1]), name, self.clock())
        records[busid] = holder
        self._write(records)
        return holder

    def prune(self) -> Dict[str, Holder]:
        """Drop the records of devices the kernel shows free again; rewrites the file only when one went."""
        records = read(self.path)
        live = self._live(records)
        if len(live) != len(records):
            self._write(live)
        return live

    def _live(self, records: Dict[str, Holder]) -> Dict[str, Holder]:
        return {busid: holder for busid, holder in records.items() if self._in_use(busid)}

    def _in_use(self, busid: str) -> bool:
        try:
            return self.status(busid) is DeviceStatus.USED
        except UsbipError:  # gone, or the driver no longer holds it
            return False

    def _write(self, records: Dict[str, Holder]) -> None:
        if not records and not os.path.exists(self.path):
            return
        text = json.dumps({"exports": {b: h.as_json() for b, h in sorted(records.items())}}, indent=1) + "\n"
        try:
            write_atomically(self.path, text)
        except OSError as err:
            if not self.failing:
                log.warning("export records not written to %s: %s", self.path, err.strerror or err)
            self.failing = True
            return
        self.failing = False


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: a 0600 temporary file in the same (0700 if created) directory, renamed."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            fd = -1
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
