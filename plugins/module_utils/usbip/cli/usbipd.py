# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``usbipd``: the USB/IP server daemon.

Accepts the C daemon's command line (``-4 -6 -e -D -d -P -t``) and adds what
operators keep asking it for: listen addresses, an allow-list of client
networks, limits, USB/IP inside TLS with client certificates (the kernel
keeps the data path: see ``usbip.net.tls``), and a YAML configuration file. It runs in the foreground by
default, which is what systemd wants; ``-D`` daemonizes and logs to syslog.

Started as root it runs as two processes (docs/architecture.md, "Process
model"): this one stays the privileged monitor (:class:`usbip.daemon.process.Monitor`)
and forks the network process (:func:`_network`), which binds, drops to the
configured account and asks the monitor for each export over the channel of
:mod:`usbip.daemon.privsep`. :func:`load_service` is the one loader of the
configuration, at start and on SIGHUP.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from typing import Callable, List, Optional

from .. import __version__
from ..errors import UsbipError
from .common import EXIT_FAILURE, EXIT_OK, Parser, describe, run_program

DEFAULT_PID_FILE = "/var/run/usbipd.pid"
#: Present once the kernel's tls module (the record layer USB/IP inside TLS runs on) is loaded.
TLS_MODULE = "/sys/module/tls"
RULES_POLL_SECONDS = 5
#: Seconds a stopping network process lets requests in flight finish after it stopped listening.
DRAIN_SECONDS = 2.0
log = logging.getLogger("usbipd")


def _parser() -> Parser:
    from ..protocol.constants import USBIP_PORT, USBIP_TLS_PORT  # noqa: PLC0415

    p = Parser(
        prog="usbipd", description="USB/IP server daemon (Python implementation, compatible with the C usbipd).")
    p.add_argument("-4", "--ipv4", action="store_true", help="listen on IPv4 only (unless -6 is given too)")
    p.add_argument("-6", "--ipv6", action="store_true", help="listen on IPv6 only (unless -4 is given too)")
    p.add_argument("-e", "--device", action="store_true", help="device mode: export gadgets bound to usbip-vudc")
    p.add_argument("-D", "--daemon", action="store_true", help="run in the background and log to syslog")
    p.add_argument("-d", "--debug", action="store_true", help="log every request")
    p.add_argument("-P", "--pid", nargs="?", const=DEFAULT_PID_FILE, metavar="FILE",
                   help="write the process id to FILE (default %s)" % DEFAULT_PID_FILE)
    p.add_argument("-t", "--tcp-port", type=str, metavar="PORT", help="TCP port to listen on (default %d)" % USBIP_PORT)
    p.add_argument("-l", "--listen", action="append", metavar="ADDRESS",
                   help="listen on this address only (repeatable; default: every address)")
    p.add_argument("-a", "--allow", action="append", metavar="CIDR",
                   help="serve only clients from this network (repeatable; default: everyone)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve USB/IP inside TLS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument("--tls-ca", metavar="FILE", help="CA certificates that sign the clients' certificates (PEM)")
    p.add_argument("--tls-port", metavar="PORT", help="TCP port of USB/IP over TLS (default %d)" % USBIP_TLS_PORT)
    p.add_argument("--tls-allow-name", action="append", metavar="NAME",
                   help="admit only client certificates with this name: dns:NAME or ip:ADDRESS (a bare value is an"
                        " address if it parses as one, else a DNS name); repeatable")
    p.add_argument("--tls-only", action="store_true", help="do not serve plain USB/IP beside TLS")
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration (command-line options override it)")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration (the file and these options, not the TLS certificates' contents),"
                        " print nothing and exit: 0 if it is valid, 2 with the error")
    p.add_argument("--check-files", action="store_true",
                   help="with --check-config: also load the TLS certificate, key and CA as a start would, and fail"
                        " (exit 2, with the start's error) if they do not load")
    p.add_argument("--syslog", action="store_true", help="log to syslog even in the foreground")
    p.add_argument("-v", "--version", action="version", version="usbipd (usbip.usbip %s, Python)" % __version__)
    return p


def load_config(path: str):
    """Read and validate the YAML file the server role templates (see :mod:`usbip.config`)."""
    from .. import config  # noqa: PLC0415 - only needed with --config

    return config.load(path, config.parse_usbipd)


def _options(args, config, load_certificates: bool = True):
    """Server options from the validated configuration, overridden by the command line.

    ``load_certificates=False`` (``--check-config``) checks the TLS settings
    but does not read the PEM files: a configuration can be checked before
    the certificates are in place, and a bad certificate fails the start.
    """
    from .. import config as schema  # noqa: PLC0415
    from .. import validate  # noqa: PLC0415
    from ..net.server import ServerOptions  # noqa: PLC0415
    from ..protocol.constants import USBIP_PORT  # noqa: PLC0415

    port = validate.tcp_port(args.tcp_port) if args.tcp_port is not None else config.port or USBIP_PORT
    listen = tuple(schema.listen_address(a, "--listen") for a in args.listen) if args.listen else config.listen
    allow = tuple(schema.network(a, "--allow") for a in args.allow) if args.allow else config.allow
    options = ServerOptions(
        port=port,
        addresses=list(listen),
        allow=allow,
        read_timeout=config.read_timeout,
        max_connections=config.max_connections,
        max_per_client=config.max_per_client,
        client_prefix_ipv4=config.client_prefix_ipv4,
        client_prefix_ipv6=config.client_prefix_ipv6,
    )
    if args.ipv4 != args.ipv6:  # one of them alone restricts, both or neither mean both
        options.ipv4, options.ipv6 = args.ipv4, args.ipv6
    _tls_options(args, config.tls, options, load_certificates)
    return options


def _tls_options(args, config, options, load_certificates: bool = True) -> None:
    """``tls:`` of the configuration (complete or absent), overridden by the --tls-* options."""
    from .. import validate  # noqa: PLC0415
    from ..errors import InvalidArgument  # noqa: PLC0415
    from ..net.tls import TlsConfig, TlsEndpoint  # noqa: PLC0415
    from ..protocol import USBIP_TLS_PORT  # noqa: PLC0415

    paths = {key: getattr(args, "tls_" + key) or (getattr(config, key) if config else None)
             for key in ("cert", "key", "ca")}
    if args.tls_allow_name:
        names = [validate.peer_name(name, "--tls-allow-name") for name in args.tls_allow_name]
    else:
        names = list(config.allow_names) if config else []
    only = args.tls_only or bool(config and config.only)
    if not any(paths.values()):
        if only or args.tls_port or names:
            raise InvalidArgument("TLS settings without a certificate: give tls cert, key and ca")
        return
    missing = sorted(key for key, value in paths.items() if not value)
    if missing:
        raise InvalidArgument("TLS needs cert, key and ca; missing: %s" % ", ".join(missing))
    if args.tls_port is not None:
        port = validate.tcp_port(args.tls_port)
    else:
        port = config.port if config else USBIP_TLS_PORT
    if not only and port == options.port:
        raise InvalidArgument("the TLS port and the plain USB/IP port are both %d" % port)
    options.tls_port, options.plain = port, not only
    if load_certificates:
        config_ = TlsConfig(cert=str(paths["cert"]), key=str(paths["key"]), ca=str(paths["ca"]),
                            allow_names=frozenset(names),
                            max_handshakes=config.max_handshakes if config else TlsConfig.max_handshakes)
        options.tls = TlsEndpoint(config_, server_side=True)


def _daemonize() -> int:
    """Classic double fork: no controlling terminal, not a process-group leader.

    The starting process stays until the daemon serves, so that a taken port
    or a wrong address is still reported on the terminal and by the exit
    status: it waits on a pipe whose write end is returned here. The monitor
    writes ``ready`` to it once the network process serves; the network
    process writes its start error instead.
    """
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        status = _await_daemon(read_end)
        _stop_logging()
        os._exit(status)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    _after_fork()
    return write_end


def _await_daemon(read_end: int) -> int:
    """In the starting process of ``-D``: the daemon's word on its start, as an exit status."""
    import sys  # noqa: PLC0415

    data = b""
    while not data.endswith(b"ready\n"):
        chunk = os.read(read_end, 512)
        if not chunk:
            break
        data += chunk
    if data.endswith(b"ready\n"):
        return EXIT_OK
    reason = " ".join(data.decode("utf-8", "replace").split()) or "the daemon stopped during its start (see the log)"
    sys.stderr.write("usbipd: error: %s\n" % reason)
    sys.stderr.flush()
    return EXIT_FAILURE


def _tell_starter(ready_fd: Optional[int], err: BaseException) -> None:
    """With ``-D``, the start error goes to the waiting starting process too (the daemon's stderr is gone)."""
    if ready_fd is not None:
        try:
            os.write(ready_fd, describe(err).encode("utf-8", "replace")[:4000])
        except OSError:
            pass


def _write_pid(path: str) -> None:
    try:
        with open(path, "w") as f:
            f.write("%d\n" % os.getpid())
    except OSError as err:
        raise UsbipError("cannot write pid file %s: %s" % (path, err.strerror)) from None


def _validated(args, load_certificates: bool = True):
    """The configuration file and the command line, validated: (config, server options, modes)."""
    from ..config import UsbipdConfig  # noqa: PLC0415
    from ..errors import InvalidArgument  # noqa: PLC0415

    config = load_config(args.config) if args.config else UsbipdConfig()
    options = _options(args, config, load_certificates)
    modes = ["device"] if args.device else list(config.modes)
    if config.exports and "host" not in modes:
        raise InvalidArgument("exports: export rules bind host-mode devices, but host mode is not served")
    return config, options, modes


def load_service(args):
    """Everything the monitor needs to serve, from the configuration: run at start and on every SIGHUP.

    Validates the file and the command line, loads the TLS material (root-only
    files, read here in the monitor), looks the account up, checks that the
    kernel modules are loaded. Any failure is one :class:`UsbipError` line.
    """
    from ..daemon import exports, ownership, process  # noqa: PLC0415
    from ..daemon.catalog import exporter_for  # noqa: PLC0415
    from ..net.server import allows  # noqa: PLC0415
    from ..sysfs.fs import Sysfs  # noqa: PLC0415
    from ..sysfs.host import HostDriver  # noqa: PLC0415

    config, options, modes = _validated(args)
    release = options.tls.close if options.tls is not None else (lambda: None)
    if options.tls is not None:
        _check_tls_module()
    try:
        who = process.account(config.user) if os.geteuid() == 0 else None
        sysfs = Sysfs(os.environ.get("USBIP_SYSFS_ROOT", "/"))
        exporter = exporter_for(modes, sysfs)
        try:
            exporter.check_loaded()
        except UsbipError as err:
            needed = " and ".join({"host": "usbip-core and usbip-host", "device": "usbip-vudc"}[m] for m in modes)
            raise UsbipError("%s; please load %s" % (err.args[0], needed), hint=err.hint) from None
    except BaseException:
        release()
        raise
    rules = list(config.exports)
    host = HostDriver(sysfs)

    def apply_rules() -> None:
        exports.apply(host, rules)

    # Root keeps the records in /run/usbip; another user only where USBIP_EXPORTS_FILE points.
    records = ownership.Ownership(exporter.status) \
        if os.geteuid() == 0 or os.environ.get(ownership.PATH_ENV) else None
    return process.Service(
        exporter=exporter, modes=modes, apply_rules=apply_rules, account=who, ownership=records,
        network=functools.partial(_network, options, exporter, rules, sysfs, who),
        description="%s-mode devices" % exporter.mode, close=release,
        peer_allowed=functools.partial(allows, tuple(options.allow)))


def serve(args, service) -> int:
    """Run the monitor (this process) and its network process until stopped; returns the exit status."""
    from ..daemon.process import Monitor  # noqa: PLC0415
    from . import systemd  # noqa: PLC0415

    ready_fd = _daemonize() if args.daemon else None
    try:
        if args.pid:
            _write_pid(args.pid)
    except UsbipError as err:
        _tell_starter(ready_fd, err)
        service.release()
        raise
    try:
        return Monitor(lambda: load_service(args), systemd, ready_fd,
                       watchdog_seconds=systemd.watchdog_seconds()).run(service)
    finally:
        if args.pid:
            try:
                os.unlink(args.pid)
            except OSError:
                pass


def _network(options, driver, rules, sysfs, who, channel_socket, ready_fd: Optional[int],
             ping_seconds: Optional[float] = None) -> int:
    """The network process: bind, drop privileges, serve; returns its exit status.

    Runs in the child the monitor forked. Everything it will import is
    imported before the drop, so that an installation only root can read
    still works.
    """
    _after_fork()
    try:
        return _run_network(options, driver, rules, sysfs, who, channel_socket, ready_fd, ping_seconds)
    finally:
        _stop_logging()


def _run_network(options, driver, rules, sysfs, who, channel_socket, ready_fd: Optional[int],
                 ping_seconds: Optional[float] = None) -> int:
    import asyncio  # noqa: PLC0415 - imported before the drop

    from ..daemon import process  # noqa: PLC0415
    from ..daemon.catalog import Catalog  # noqa: PLC0415
    from ..daemon.privsep import RULES, Channel, ProxyExporter  # noqa: PLC0415
    from ..net.server import UsbipServer  # noqa: PLC0415
    from ..sysfs.uevents import UeventWatcher  # noqa: PLC0415

    _preload(options)
    channel = Channel(channel_socket)
    pending = []
    starter = [ready_fd]  # None once closed: the number may be reused

    def send_rules() -> None:
        pending.clear()
        try:
            channel.call(RULES)
        except UsbipError as err:
            log.warning("export rules not applied: %s", err)

    def schedule_rules() -> None:
        # A replug is a burst of uevents; bind once it has settled.
        if rules and not pending:
            pending.append(asyncio.get_running_loop().call_later(0.5, send_rules))

    try:
        server = UsbipServer(Catalog(ProxyExporter(driver, channel)), options, on_change=schedule_rules,
                             watcher=UeventWatcher)
        server.bind()
        if who is not None:
            process.drop_privileges(who)
            process.require_readable([sysfs.real("/sys")], who)
        asyncio.run(_serve_network(server, channel, driver, rules, send_rules, starter, ping_seconds))
    except UsbipError as err:
        log.error("%s", describe(err))
        _tell_starter(starter[0], err)
        return EXIT_FAILURE
    return EXIT_OK


async def _serve_network(server, channel, driver, rules, send_rules, starter: List[Optional[int]],
                         ping_seconds: Optional[float] = None) -> None:
    import asyncio  # noqa: PLC0415

    from ..daemon.privsep import READY  # noqa: PLC0415

    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def broken(why: str) -> None:
        # Replies carry no sequence number: after a timeout or a stray message, none could be trusted again.
        log.error("the channel to the monitor is broken (%s): stopping", why)
        loop.remove_reader(channel.fileno())
        stop.set()

    channel.call(READY)
    channel.on_broken = broken
    loop.add_reader(channel.fileno(), channel.check)
    if starter[0] is not None:
        os.close(starter[0])
        starter[0] = None
    log.info("serving %s-mode devices%s", driver.mode,
             "; export rules: %s" % ", ".join(map(str, rules)) if rules else "")
    tasks = [asyncio.ensure_future(server.serve_forever())]
    if rules and not server.watcher.watching:
        tasks.append(asyncio.ensure_future(_poll_rules(send_rules)))
    if ping_seconds:
        tasks.append(asyncio.ensure_future(_ping(channel, ping_seconds)))
    await stop.wait()
    server.close()  # no new connection from here on
    deadline = loop.time() + DRAIN_SECONDS
    while server.active and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()


def _logs():
    """:mod:`usbip.cli.logs` (the queued, non-blocking logging), or None where it is not installed."""
    try:
        from . import logs  # noqa: PLC0415
    except ImportError:
        return None
    return logs


def _after_fork() -> None:
    """In a forked process that goes on logging: a new writer thread (threads do not survive a fork)."""
    restart = getattr(_logs(), "after_fork", None)
    if restart is not None:
        restart()


def _stop_logging() -> None:
    """Before a forked process exits with ``os._exit``: write out what its log queue holds."""
    stop = getattr(_logs(), "stop", None)
    if stop is not None:
        stop()


def _preload(options) -> None:
    """What the network process would otherwise import after the drop (pyudev, on first use), imported as root."""
    try:
        import pyudev  # noqa: PLC0415, F401
    except ImportError:
        pass


def _probe_tls_ulp() -> Optional[int]:
    """Ask an unconnected TCP socket for the TLS upper layer; the errno it fails with (None if it did not).

    The kernel loads the tls module for the asking process if that process
    has CAP_NET_ADMIN, then refuses the unconnected socket (ENOTCONN);
    without the module and the capability it answers ENOENT.
    """
    import socket  # noqa: PLC0415

    from ..net.tls import TCP_ULP  # noqa: PLC0415

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        except OSError as err:
            return err.errno
    return None


def _check_tls_module(module_path: Optional[str] = None, probe: Optional[Callable[[], Optional[int]]] = None) -> bool:
    """With TLS configured: is the kernel's tls module there? If not, one warning names ``modprobe tls``.

    Run by hand as root, the probe loads it. Under the unit it cannot: the
    capability bounding set holds no CAP_NET_ADMIN (and
    ``ProtectKernelModules=``), so the role loads the module (and lists it
    in modules-load.d). Without it the daemon still starts, but every import
    over TLS fails, hence the warning at each start and reload. A built-in
    tls has no ``/sys/module/tls``: the probe then finds the upper layer.
    """
    import errno  # noqa: PLC0415

    module_path = TLS_MODULE if module_path is None else module_path
    if os.path.exists(module_path) or (probe or _probe_tls_ulp)() != errno.ENOENT:
        return True
    log.warning("TLS is configured but the kernel's tls module is not loaded and usbipd may not load it: run"
                " `modprobe tls` (until then every import over TLS fails)")
    return False


async def _ping(channel, every: float) -> None:
    """Tell the monitor every ``every`` seconds that this event loop runs: it feeds systemd's watchdog on each.

    A call that fails breaks the channel, which stops this process (``on_broken``).
    """
    import asyncio  # noqa: PLC0415

    from ..daemon.privsep import PING  # noqa: PLC0415

    while not channel.gone:
        await asyncio.sleep(every)
        try:
            channel.call(PING)
        except UsbipError:
            return


async def _poll_rules(apply_rules) -> None:
    """Without uevents, look for newly plugged devices every few seconds."""
    import asyncio  # noqa: PLC0415

    while True:
        await asyncio.sleep(RULES_POLL_SECONDS)
        apply_rules()


def _configure_and_serve(args) -> int:
    """Validate everything (file and command line) before the kernel is probed; then serve.

    ``--check-config --check-files`` also loads the TLS files as a start
    does; a file that fails is the start's own line, with the exit status of
    a configuration error (2).
    """
    from ..errors import InvalidArgument  # noqa: PLC0415

    if args.check_files and not args.check_config:
        raise InvalidArgument("--check-files goes with --check-config")
    if args.check_config:
        try:
            _config, options, _modes = _validated(args, load_certificates=args.check_files)
        except InvalidArgument:
            raise
        except UsbipError as err:  # the TLS files: as a start reports them, as a configuration error
            raise InvalidArgument(err.args[0], hint=err.hint) from None
        if options.tls is not None:
            options.tls.close()
        return EXIT_OK
    return serve(args, load_service(args))


def main(argv: Optional[List[str]] = None) -> int:
    return run_program("usbipd", _parser, _configure_and_serve, argv, syslog=lambda args: args.syslog or args.daemon)


if __name__ == "__main__":
    raise SystemExit(main())
