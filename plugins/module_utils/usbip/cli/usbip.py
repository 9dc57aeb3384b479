# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``usbip``: the USB/IP client and device-management command line.

It accepts the C tool's command lines and prints the C tool's human output
line for line, because people and scripts already read that output. Where the
C tool is buggy or unfriendly it does better, on purpose:

* ``list -p`` is parsable whether it comes before or after ``-l``/``-d``/``-r``
  (C: only before), and ``-r`` honours it too.
* ``list -d`` prints the gadget's real ``vendor:product`` (C: ``(0x1d:0x1d)``)
  and skips usbip-vudc instances without a gadget (C: the whole listing fails).
* ``bind`` of a device already bound to usbip-host, ``unbind`` of one that is
  not, and ``detach`` of a free port succeed without change and say so (exit 0).
* Errors are one ``usbip: error: ...`` line. Exit status 1 means the request
  failed, 2 that the command line or an argument was invalid, and then nothing
  was read or changed: busids, ports and the TCP port are validated while the
  command line is parsed. A bad ``--tcp-port`` is an error (C: ignored).
* ``--json`` on ``list`` and ``port`` gives machine-readable output.

JSON output. Keys are never removed or renamed; new keys may be added.

``list -l|-r|-d --json`` prints a list of devices::

    {"busid": "17-1", "path": "/sys/devices/...", "busnum": 17, "devnum": 2,
     "usbid": "1209:0001", "vendor_id": "1209", "product_id": "0001",
     "vendor": "Generic" | null, "product": "pid.codes Test PID" | null,
     "bcd_device": "0100", "speed": "high", "speed_text": "High Speed(480Mbps)",
     "class": {"class": "00", "subclass": "00", "protocol": "00"},
     "configuration": 1, "num_configurations": 1,
     "interfaces": [{"class": "02", "subclass": "02", "protocol": "01"}, ...],
     "driver": "usb" | null, "serial": "..." | null}

Ids and class codes are lower-case hex strings (4 and 2 digits), names come
from ``usb.ids`` (null when unknown), ``speed`` is one of ``unknown low full
high wireless super super_plus``. ``driver`` and ``serial`` are known for
local devices only; remote and device-mode records carry null. ``list -l``
and ``list -d`` add ``attached_by``: null when the device is free (or usbipd
keeps no record of it, or the records are not readable: they are root's),
else ``{"host": "10.0.0.5", "port": 40512, "tls_name": "dns:client" | null,
"since": "2026-01-02T03:04:05Z"}`` from usbipd's ``/run/usbip/exports.json``.

``port --json`` prints a list of imported devices::

    {"port": 1, "hub": "hs", "status": "used" | "error", "speed": "high",
     "speed_text": "High Speed(480Mbps)", "local_busid": "1-2",
     "usbid": "1209:0001" | null, "vendor_id": "1209" | null, "product_id": "0001" | null,
     "vendor": "Generic" | null, "product": "pid.codes Test PID" | null,
     "host": "127.0.0.1" | null, "remote_port": 3241 | null, "remote_busid": "17-1" | null,
     "devid": 1114114, "remote_busnum": 17, "remote_devnum": 2}

``host``, ``remote_port`` and ``remote_busid`` are null without an attachment
record (``/var/run/vhci_hcd/port<N>``), the ids when the local device is not
(yet) visible.

Test hook: :func:`main` takes ``sysfs`` (a :class:`~usbip.sysfs.fs.Sysfs`)
and ``names`` (a :class:`~usbip.sysfs.names.UsbIds`); without them the root
of ``/sys`` and ``/var/run`` is ``$USBIP_SYSFS_ROOT`` if set (as for
``usbipd``), else ``/``.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .. import __version__, validate
from ..errors import InvalidArgument, UsbipError
from .common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ParserExit,
    Reporter,
    UsageError,
    checked,
    write_stdout,
)

if TYPE_CHECKING:
    import argparse

    from ..device import Speed, UsbDevice, UsbInterface
    from ..sysfs.fs import Sysfs
    from ..sysfs.names import UsbIds
    from ..sysfs.usb import LocalDevice
    from ..sysfs.vhci import ImportedDevice
    from .common import Parser

PROG = "usbip"
SYSFS_ROOT_ENV = "USBIP_SYSFS_ROOT"
_INT_MAX = 2**31 - 1

# usbip_status_string() of the C tools, for the vhci ``sta`` column.
_PORT_STATUS_TEXT = {4: "Port Available", 5: "Port Initializing", 6: "Port in Use", 7: "Port Error"}


# -- argument types ------------------------------------------------------------
def _vhci_port(value: str) -> int:
    return validate.integer(value, "port", 0, _INT_MAX)


#: The longest --timeout accepted: an hour is already no bound a person waits for.
_TIMEOUT_MAX = 3600.0


def _timeout(value: str) -> float:
    """--timeout: seconds, a finite number in (0, 3600]."""
    try:
        number = float(value)
    except ValueError:
        raise InvalidArgument("invalid timeout %r: expected a number of seconds" % value) from None
    return validate.seconds(number, "timeout", 0.0, _TIMEOUT_MAX)


class _PortsHelp(str):
    """A help text naming the default ports, filled in when argparse formats it.

    The ports are the protocol's constants, and importing the codec for
    them would slow down every command that never reaches a server.
    """

    def __mod__(self, params: Any) -> str:
        from ..attachments import default_port  # noqa: PLC0415

        return str.__mod__(self, dict(params, plain_port=default_port(tls=False), tls_port=default_port(tls=True)))


def _parser() -> Tuple[Parser, Dict[str, Parser]]:
    from .common import Parser  # noqa: PLC0415 - argparse only when needed (see _fast_args)

    parser = Parser(
        prog=PROG,
        description="USB/IP client and device management (Python implementation, compatible with the C usbip).",
        epilog="'usbip help <command>' shows a command's options.",
    )
    parser.add_argument("-d", "--debug", action="store_true", help="print debugging messages")
    parser.add_argument("-l", "--log", action="store_true", help="send messages to syslog as well")
    parser.add_argument("-t", "--tcp-port", type=checked(validate.tcp_port), default=None, metavar="PORT",
                        help=_PortsHelp("TCP port of the remote usbipd (default %(plain_port)d,"
                                        " with TLS %(tls_port)d)"))
    parser.add_argument("--timeout", type=checked(_timeout), default=None, metavar="SECONDS",
                        help="bound on the whole exchange with the remote usbipd: connecting, TLS, the request"
                             " and the complete reply (default 20)")
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="talk to the remote usbipd inside TLS; FILE holds the CA certificates that sign it")
    parser.add_argument("--tls-cert", metavar="FILE", help="this client's certificate (PEM), with --tls-ca")
    parser.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM), with --tls-ca")
    parser.add_argument("--tls-server-name", metavar="NAME",
                        help="name the server's certificate must carry (default: the remote HOST)")
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    commands: Dict[str, Parser] = {}

    def add(name: str, summary: str, description: str) -> Parser:
        commands[name] = sub.add_parser(name, help=summary, description=description)
        return commands[name]

    p = add("help", "show the help of usbip or of one command", "Show the help of usbip or of one command.")
    p.add_argument("topic", nargs="?", metavar="command")
    add("version", "show the version", "Show the version of this usbip.")

    p = add("attach", "attach a remote USB device",
            "Import a device exported by a remote usbipd and attach it to a free vhci_hcd port.")
    p.add_argument("-r", "--remote", required=True, type=checked(validate.host), metavar="HOST",
                   help="the machine that exports the device")
    p.add_argument("-b", "--busid", dest="busid", type=checked(validate.busid), metavar="BUSID",
                   help="busid of the device on HOST")
    p.add_argument("-d", "--device", dest="busid", type=checked(validate.busid), metavar="BUSID",
                   help="same as -b, for a device-mode server's usbip-vudc.N")

    p = add("detach", "detach a remote USB device", "Detach an imported device from its vhci_hcd port.")
    p.add_argument("-p", "--port", required=True, type=checked(_vhci_port), metavar="PORT",
                   help="the vhci_hcd port the device is on ('usbip port' lists them)")

    p = add("list", "list exportable or local USB devices",
            "List the devices a remote usbipd exports, or this machine's devices.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("-l", "--local", action="store_true", help="local USB devices that can be bound")
    which.add_argument("-r", "--remote", type=checked(validate.host), metavar="HOST", help="devices exported by HOST")
    which.add_argument("-d", "--device", action="store_true", help="gadgets bound to usbip-vudc (device mode)")
    p.add_argument("-p", "--parsable", action="store_true", help="one 'busid=...#usbid=...#' line per device")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("bind", "bind a device to usbip-host.ko", "Offer a local USB device for export (bind it to usbip-host).")
    p.add_argument("-b", "--busid", required=True, type=checked(validate.usb_busid), metavar="BUSID",
                   help="busid of the local device")

    p = add("unbind", "unbind a device from usbip-host.ko",
            "Stop offering a local device and give it back to its usual driver.")
    p.add_argument("-b", "--busid", required=True, type=checked(validate.usb_busid), metavar="BUSID",
                   help="busid of the local device")

    p = add("release", "end the current import of an exported device",
            "End the current import of a device this machine exports (usbip-host or usbip-vudc.N) and leave it"
            " exported: the client's vhci port frees and the device can be imported again.")
    p.add_argument("-b", "--busid", required=True, type=checked(validate.busid), metavar="BUSID",
                   help="busid of the exported device (or usbip-vudc.N)")

    p = add("port", "show imported USB devices", "Show the devices imported through vhci_hcd.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser, commands


#: Options of the commands :func:`_fast_args` parses: option -> (attribute, type).
_FAST_GLOBAL = {"-d": ("debug", None), "--debug": ("debug", None), "-l": ("log", None), "--log": ("log", None),
                "-t": ("tcp_port", validate.tcp_port), "--tcp-port": ("tcp_port", validate.tcp_port),
                "--timeout": ("timeout", _timeout)}
_FAST_COMMANDS = {
    "attach": {"-r": ("remote", validate.host), "--remote": ("remote", validate.host),
               "-b": ("busid", validate.busid), "--busid": ("busid", validate.busid),
               "-d": ("busid", validate.busid), "--device": ("busid", validate.busid)},
    "detach": {"-p": ("port", _vhci_port), "--port": ("port", _vhci_port)},
}
_FAST_REQUIRED = {"attach": ("remote", "busid"), "detach": ("port",)}


def _fast_args(argv: Sequence[str]) -> Optional[SimpleNamespace]:
    """``attach`` and ``detach`` command lines in their plain forms, parsed without argparse.

    Importing argparse and building the eight sub-parsers is most of what
    ``usbip attach`` costs before it reaches the network. Options are the exact
    spellings (``-t N``, ``-tN``, ``--tcp-port N``, ``--tcp-port=N``), each value
    checked by the same validator argparse would use; anything else (help,
    abbreviations, grouped flags, a bad value, a missing option) returns None,
    and argparse then parses the line and words any error as always.
    """
    args = SimpleNamespace(debug=False, log=False, tcp_port=None, timeout=None, command=None)
    options = _FAST_GLOBAL
    words = list(argv)
    while words:
        word = words.pop(0)
        if args.command is None and word in _FAST_COMMANDS:
            args.command = word
            options = _FAST_COMMANDS[word]
            continue
        name, eq, value = word.partition("=") if word.startswith("--") else (word[:2], "", word[2:])
        if name not in options or (eq and not value) or value.startswith("="):
            return None  # argparse reads "-r=x" as "x"; left to it, like every other unusual form
        dest, convert = options[name]
        if convert is None:
            if value or eq:
                return None
            setattr(args, dest, True)
            continue
        if not value:
            if not words or words[0].startswith("-"):
                return None
            value = words.pop(0)
        try:
            setattr(args, dest, convert(value))
        except InvalidArgument:
            return None
    if args.command is None or any(getattr(args, dest, None) is None for dest in _FAST_REQUIRED[args.command]):
        return None
    return args


# -- context -------------------------------------------------------------------
class _Context:
    """What a command needs, created on first use: most commands need only part of it."""

    def __init__(self, args: argparse.Namespace, reporter: Reporter, parser: Parser, commands: Dict[str, Parser],
                 sysfs: Optional[Sysfs], names: Optional[UsbIds]) -> None:
        self.args = args
        #: A client TLS endpoint when the --tls-* options ask for USB/IP over TLS.
        self.tls: Any = None
        self.reporter = reporter
        self.parser = parser
        self.commands = commands
        self._sysfs = sysfs
        self._names = names

    @property
    def sysfs(self) -> Sysfs:
        if self._sysfs is None:
            from ..sysfs.fs import Sysfs  # noqa: PLC0415

            self._sysfs = Sysfs(os.environ.get(SYSFS_ROOT_ENV) or "/")
        return self._sysfs

    @property
    def names(self) -> UsbIds:
        if self._names is None:
            from ..sysfs import names  # noqa: PLC0415

            self._names = names.default()
        return self._names


# -- JSON shapes -----------------------------------------------------------------
def _speed_json(speed: Speed) -> Dict[str, Any]:
    return {"speed": speed.name.lower(), "speed_text": speed.description}


def _class_json(cls: int, subclass: int, protocol: int) -> Dict[str, str]:
    return {"class": "%02x" % cls, "subclass": "%02x" % subclass, "protocol": "%02x" % protocol}


def _interface_json(intf: UsbInterface) -> Dict[str, str]:
    return _class_json(intf.interface_class, intf.interface_subclass, intf.interface_protocol)


def _device_json(device: UsbDevice, names: UsbIds, local: Optional[LocalDevice] = None) -> Dict[str, Any]:
    entry: Dict[str, Any] = {
        "busid": device.busid,
        "path": device.path,
        "busnum": device.busnum,
        "devnum": device.devnum,
        "usbid": device.usbid,
        "vendor_id": "%04x" % device.id_vendor,
        "product_id": "%04x" % device.id_product,
        "vendor": names.vendor(device.id_vendor),
        "product": names.product(device.id_vendor, device.id_product),
        "bcd_device": "%04x" % device.bcd_device,
    }
    entry.update(_speed_json(device.speed))
    entry.update({
        "class": _class_json(device.device_class, device.device_subclass, device.device_protocol),
        "configuration": device.configuration_value,
        "num_configurations": device.num_configurations,
        "interfaces": [_interface_json(intf) for intf in device.interfaces],
        "driver": local.driver if local else None,
        "serial": local.serial if local else None,
    })
    return entry


def _port_json(imported: ImportedDevice, local: Optional[LocalDevice], names: UsbIds) -> Dict[str, Any]:
    device = local.device if local else None
    entry: Dict[str, Any] = {
        "port": imported.port,
        "hub": imported.hub,
        "status": imported.status.name.lower(),
    }
    entry.update(_speed_json(_port_speed(imported, local)))
    entry.update({
        "local_busid": imported.local_busid,
        "usbid": device.usbid if device else None,
        "vendor_id": "%04x" % device.id_vendor if device else None,
        "product_id": "%04x" % device.id_product if device else None,
        "vendor": names.vendor(device.id_vendor) if device else None,
        "product": names.product(device.id_vendor, device.id_product) if device else None,
        "host": imported.host,
        "remote_port": imported.remote_port,
        "remote_busid": imported.remote_busid,
        "devid": imported.devid,
        "remote_busnum": imported.devid >> 16,
        "remote_devnum": imported.devid & 0xFFFF,
    })
    return entry


def _write_json(data: Any) -> None:
    import json  # noqa: PLC0415 - only for --json

    write_stdout(json.dumps(data, indent=2) + "\n")


#: Output is written in pieces of about this size, so that a long listing is never held whole.
_CHUNK = 65536


def _write_chunks(pieces: Iterable[str]) -> None:
    """Write ``pieces`` in order, a few at a time: memory follows one piece, not the whole output."""
    batch: List[str] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= _CHUNK:
            write_stdout("".join(batch))
            batch, size = [], 0
    if batch:
        write_stdout("".join(batch))


def _json_list(items: Iterable[Any]) -> Iterator[str]:
    """``json.dumps(list(items), indent=2) + "\n"``, one item at a time.

    JSON escapes the newlines inside strings, so indenting each item's lines
    by two spaces gives exactly the text of the whole list.
    """
    import json  # noqa: PLC0415 - only for --json

    separator = "[\n  "
    for item in items:
        yield separator + json.dumps(item, indent=2).replace("\n", "\n  ")
        separator = ",\n  "
    yield "[]\n" if separator == "[\n  " else "\n]\n"


# -- human output (the C tool's layout) -------------------------------------------
def _short_listing(devices: Sequence[UsbDevice], names: UsbIds) -> Iterator[str]:
    """``list -l`` / ``list -d``: busid and ids, then the names, then a blank line."""
    for d in devices:
        yield " - busid %s (%s)\n   %s\n\n" % (d.busid, d.usbid, names.product_line(d.id_vendor, d.id_product))


def _parsable_listing(devices: Sequence[UsbDevice]) -> Iterator[str]:
    for d in devices:
        yield "busid=%s#usbid=%s#\n" % (d.busid, d.usbid)


def _remote_listing(host: str, devices: Sequence[UsbDevice], names: UsbIds) -> Iterator[str]:
    """``list -r``: the C tool's layout, one device at a time."""
    yield "Exportable USB devices\n======================\n - %s\n" % host
    for d in devices:
        lines = [
            "%11s: %s" % (d.busid, names.product_line(d.id_vendor, d.id_product)),
            "%11s: %s" % ("", d.path),
            "%11s: %s" % ("", names.class_line(d.device_class, d.device_subclass, d.device_protocol)),
        ]
        for number, intf in enumerate(d.interfaces):
            text = names.class_line(intf.interface_class, intf.interface_subclass, intf.interface_protocol)
            lines.append("%11s: %2d - %s" % ("", number, text))
        lines.append("\n")
        yield "\n".join(lines)


def _port_listing(rows: Sequence[Tuple[ImportedDevice, Optional[LocalDevice]]], names: UsbIds) -> str:
    lines = ["Imported USB devices", "===================="]
    for imported, local in rows:
        status = _PORT_STATUS_TEXT.get(int(imported.status), "Unknown Status")
        lines.append("Port %02d: <%s> at %s" % (imported.port, status, _port_speed(imported, local).description))
        # Without the local device its ids are unknown; the C tool then shows zeros.
        vendor, product = (local.device.id_vendor, local.device.id_product) if local else (0, 0)
        lines.append("       %s" % names.product_line(vendor, product))
        if imported.host is not None:
            lines.append("%10s -> usbip://%s:%d/%s" % (
                imported.local_busid, imported.host, imported.remote_port, imported.remote_busid))
        else:
            lines.append("%10s -> unknown host, remote port and remote busid" % imported.local_busid)
        lines.append("%10s -> remote bus/dev %03d/%03d" % (" ", imported.devid >> 16, imported.devid & 0xFFFF))
    return "\n".join(lines) + "\n"


def _port_speed(imported: ImportedDevice, local: Optional[LocalDevice]) -> Speed:
    """The device's own speed, as the C tool shows it; the port's while the device is not visible."""
    if local is not None and local.device.speed:
        return local.device.speed
    return imported.speed


# -- commands ----------------------------------------------------------------------
def _cmd_help(ctx: _Context) -> int:
    topic = ctx.args.topic
    if topic is None:
        write_stdout(ctx.parser.format_help())
        return EXIT_OK
    if topic not in ctx.commands:
        raise UsageError("unknown command %r (commands: %s)" % (topic, ", ".join(ctx.commands)))
    write_stdout(ctx.commands[topic].format_help())
    return EXIT_OK


def _cmd_version(ctx: _Context) -> int:
    write_stdout("%s (usbip-utils %s, Python implementation)\n" % (PROG, __version__))
    return EXIT_OK


def _tls(args) -> Any:
    """The client TLS endpoint the --tls-* options ask for, or None."""
    if not getattr(args, "tls_ca", None):
        if getattr(args, "tls_cert", None) or getattr(args, "tls_key", None) or getattr(args, "tls_server_name", None):
            raise UsageError("--tls-cert, --tls-key and --tls-server-name need --tls-ca")
        return None
    if not args.tls_cert or not args.tls_key:
        raise UsageError("TLS needs --tls-cert and --tls-key with --tls-ca")
    from ..attachments import tls_endpoint  # noqa: PLC0415

    return tls_endpoint(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key, server_name=args.tls_server_name)


def _server_port(ctx: _Context) -> int:
    """--tcp-port, else the default of plain USB/IP or of USB/IP inside TLS (settled on use:
    only the commands that reach a server need it)."""
    if ctx.args.tcp_port is None:
        from ..attachments import default_port  # noqa: PLC0415

        ctx.args.tcp_port = default_port(tls=ctx.tls is not None)
    return ctx.args.tcp_port


def _cmd_list(ctx: _Context) -> int:
    args = ctx.args
    if args.json and args.parsable:
        raise UsageError("-p/--parsable and --json cannot be combined")
    locals_: List[Optional[LocalDevice]]
    if args.remote is not None:
        from ..net import client  # noqa: PLC0415

        tcp_port = _server_port(ctx)
        ctx.reporter.debug("asking %s:%d for its exportable devices" % (args.remote, tcp_port))
        devices = client.list_devices(args.remote, tcp_port, timeout=args.timeout, tls=ctx.tls)
        locals_ = [None] * len(devices)
    elif args.local:
        from ..sysfs.host import HostDriver  # noqa: PLC0415

        found = HostDriver(ctx.sysfs).bindable()
        devices = [local.device for local in found]
        locals_ = list(found)
    else:
        from ..sysfs.vudc import VudcDriver  # noqa: PLC0415

        devices = VudcDriver(ctx.sysfs).scan()
        locals_ = [None] * len(devices)

    if args.json:
        entries = (_device_json(d, ctx.names, local) for d, local in zip(devices, locals_))
        if args.remote is None:
            entries = _with_holders(ctx, entries)
        _write_chunks(_json_list(entries))
    elif args.parsable:
        _write_chunks(_parsable_listing(devices))
    elif args.remote is not None:
        if devices:
            _write_chunks(_remote_listing(args.remote, devices, ctx.names))
        else:
            ctx.reporter.info("no exportable devices found on %s" % args.remote)
    else:
        _write_chunks(_short_listing(devices, ctx.names))
    return EXIT_OK


def _with_holders(ctx: _Context, entries: Iterable[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """Each local entry with ``attached_by``: who imports the device (usbipd's records), None when free.

    A record counts only while the kernel shows the device in use, so a
    record the daemon has not pruned yet is never shown; without read access
    to the records (not root) every device shows None.
    """
    from ..daemon import ownership  # noqa: PLC0415
    from ..device import DeviceStatus  # noqa: PLC0415
    from ..sysfs.host import DRIVER_NAME, HostDriver  # noqa: PLC0415
    from ..sysfs.vudc import VudcDriver  # noqa: PLC0415

    holders = ownership.read()
    for entry in entries:
        busid = entry["busid"]
        holder = holders.get(busid)
        entry["attached_by"] = None
        if holder is not None:
            try:
                if busid.startswith("usbip-vudc."):
                    status = VudcDriver(ctx.sysfs).status(busid)
                else:
                    status = HostDriver(ctx.sysfs).status(busid) if entry.get("driver") == DRIVER_NAME else None
            except UsbipError:
                status = None
            if status is DeviceStatus.USED:
                entry["attached_by"] = holder.as_json()
        yield entry


def _not_found(busid: str) -> UsbipError:
    # The C tool's wording, which scripts grep for, plus the busid it leaves out.
    return UsbipError("device with the specified bus ID does not exist: %s" % busid,
                      hint="'usbip list -l' shows the local devices")


#: What bind and unbind report: (done, nothing to do), the latter with the driver's name.
_BIND_REPORTS = {
    "bind": ("bind device on busid %s: complete", "device on busid %s is already bound to %s; nothing to do"),
    "unbind": ("unbind device on busid %s: complete", "device on busid %s is not bound to %s; nothing to do"),
}


def _cmd_bind_or_unbind(ctx: _Context) -> int:
    """``bind`` and ``unbind``: the same steps, through :meth:`HostDriver.bind` or :meth:`HostDriver.unbind`."""
    from ..sysfs.errors import DeviceNotFound  # noqa: PLC0415
    from ..sysfs.host import DRIVER_NAME, HostDriver  # noqa: PLC0415

    busid = ctx.args.busid
    command = ctx.args.command
    try:
        result = getattr(HostDriver(ctx.sysfs), command)(busid)
    except DeviceNotFound:
        raise _not_found(busid) from None
    done, unchanged = _BIND_REPORTS[command]
    ctx.reporter.info(done % busid if result.changed else unchanged % (busid, DRIVER_NAME))
    return EXIT_OK


def _cmd_release(ctx: _Context) -> int:
    """``release``: ``-1`` to the exported device's ``usbip_sockfd`` (usbip-host or usbip-vudc)."""
    busid = ctx.args.busid
    if busid.startswith("usbip-vudc."):
        from ..sysfs.vudc import VudcDriver  # noqa: PLC0415

        VudcDriver(ctx.sysfs).release(busid)
    else:
        from ..sysfs.host import HostDriver  # noqa: PLC0415

        HostDriver(ctx.sysfs).release(busid)
    ctx.reporter.info("release device on busid %s: complete" % busid)
    return EXIT_OK


def _cmd_attach(ctx: _Context) -> int:
    args = ctx.args
    if args.busid is None:
        raise UsageError("the following arguments are required: -b/--busid (or -d/--device)")
    from ..attachments import attach  # noqa: PLC0415
    from ..sysfs.vhci import VhciDriver  # noqa: PLC0415

    tcp_port = _server_port(ctx)
    ctx.reporter.debug("importing %s from %s:%d" % (args.busid, args.remote, tcp_port))
    attached = attach(args.remote, tcp_port, args.busid, VhciDriver(ctx.sysfs), timeout=args.timeout, tls=ctx.tls)
    ctx.reporter.debug("%s from %s:%d is attached to port %d" % (
        attached.busid, attached.host, attached.tcp_port, attached.port))
    return EXIT_OK


def _cmd_detach(ctx: _Context) -> int:
    from ..sysfs.vhci import VhciDriver  # noqa: PLC0415

    port = ctx.args.port
    if VhciDriver(ctx.sysfs).detach(port):
        ctx.reporter.info("Port %d is now detached!" % port)
    else:
        ctx.reporter.info("Port %d is already detached!" % port)
    return EXIT_OK


def _cmd_port(ctx: _Context) -> int:
    from ..attachments import local_device  # noqa: PLC0415
    from ..sysfs.usb import UsbBus  # noqa: PLC0415
    from ..sysfs.vhci import VhciDriver  # noqa: PLC0415

    bus = UsbBus(ctx.sysfs)
    rows = [(imported, local_device(bus, imported.local_busid)) for imported in VhciDriver(ctx.sysfs).imported()]
    if ctx.args.json:
        _write_json([_port_json(imported, local, ctx.names) for imported, local in rows])
    else:
        write_stdout(_port_listing(rows, ctx.names))
    return EXIT_OK


_COMMANDS: Dict[str, Callable[[_Context], int]] = {
    "help": _cmd_help,
    "version": _cmd_version,
    "attach": _cmd_attach,
    "detach": _cmd_detach,
    "list": _cmd_list,
    "bind": _cmd_bind_or_unbind,
    "unbind": _cmd_bind_or_unbind,
    "port": _cmd_port,
    "release": _cmd_release,
}


def main(argv: Optional[Sequence[str]] = None, *, sysfs: Optional[Sysfs] = None,
         names: Optional[UsbIds] = None) -> int:
    """Run one ``usbip`` command; returns the exit status instead of exiting."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _fast_args(argv)
    parser = commands = None
    if args is None:
        parser, commands = _parser()
        reporter = Reporter(PROG)
        try:
            args = parser.parse_args(argv)
        except UsageError as err:
            return reporter.failure(err)
        except ParserExit as end:
            return end.status
    if args.command is None:
        write_stdout(parser.format_help())
        return EXIT_FAILURE
    reporter = Reporter(PROG, debug=args.debug, syslog=args.log)
    ctx = _Context(args, reporter, parser, commands, sysfs, names)
    try:
        ctx.tls = _tls(args)
        return _COMMANDS[args.command](ctx)
    except (UsageError, UsbipError, OSError) as err:
        return reporter.failure(err)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
