# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``usbip`` as a whole: global options, help, version, error shape, start-up cost, entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_usb import standard_tree

from usbip import __version__
from usbip.cli import common

MODULE_UTILS = str(Path(__file__).resolve().parents[3] / "plugins" / "module_utils")
COMMANDS = ["help", "version", "attach", "detach", "list", "bind", "unbind", "release", "port"]


def run_module(*argv, env=None):
    environ = dict(os.environ, PYTHONPATH=MODULE_UTILS, **(env or {}))
    return subprocess.run([sys.executable, "-m", "usbip.cli.usbip", *argv], capture_output=True, text=True,
                          env=environ, timeout=60)


def test_version(usbip):
    result = usbip("version")
    assert (result.rc, result.err) == (0, "")
    assert result.out == "usbip (usbip-utils %s, Python implementation)\n" % __version__


def test_help_lists_every_command(usbip):
    result = usbip("help")
    assert (result.rc, result.err) == (0, "")
    for command in COMMANDS:
        assert "\n    %s " % command in result.out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_one_command(usbip, command):
    result = usbip("help", command)
    assert (result.rc, result.err) == (0, "")
    assert result.out.startswith("usage: usbip %s" % command)
    assert usbip(command, "--help").out == result.out


def test_help_of_an_unknown_command(usbip):
    result = usbip("help", "frobnicate")
    assert (result.rc, result.out) == (2, "")
    assert result.err_lines == ["usbip: error: unknown command 'frobnicate' (commands: %s)" % ", ".join(COMMANDS)]


def test_no_command_prints_help_and_fails_like_c(usbip):
    result = usbip()
    assert result.rc == 1 and result.out.startswith("usage: usbip") and result.err == ""


def test_global_help_exits_zero(usbip):
    result = usbip("-h")
    assert result.rc == 0 and result.out.startswith("usage: usbip")


@pytest.mark.parametrize("argv", [
    ("frobnicate",),
    ("--tcp-port", "0", "version"),
    ("--tcp-port", "65536", "version"),
    ("-t", "abc", "version"),
    ("-t", "-1", "version"),
    ("-t", "0x10", "version"),
    ("-t", "", "version"),
    ("-t",),
    ("--bogus", "version"),
    ("version", "--tcp-port", "3240"),  # global options come before the command, as in C
])
def test_global_argument_errors_are_one_line(usbip, argv):
    result = usbip(*argv)
    assert (result.rc, result.out) == (2, "")
    assert len(result.err_lines) == 1 and result.err.startswith("usbip: error: "), result.err


def test_tcp_port_is_decimal_up_to_65535(usbip, monkeypatch):
    seen = []

    def list_devices(host, port, timeout=10.0, tls=None):
        seen.append((host, port))
        return []

    from usbip.net import client

    monkeypatch.setattr(client, "list_devices", list_devices)
    assert usbip("-t", "65535", "list", "-r", "h").rc == 0
    assert usbip("--tcp-port=1", "list", "-r", "h").rc == 0
    assert usbip("-t3241", "list", "-r", "h").rc == 0
    assert usbip("list", "-r", "h").rc == 0
    assert seen == [("h", 65535), ("h", 1), ("h", 3241), ("h", 3240)]


def test_timeout_bounds_the_exchange_of_list_and_attach(usbip, monkeypatch):
    from usbip import attachments
    from usbip.cli import usbip as cli
    from usbip.net import client

    seen = []
    monkeypatch.setattr(client, "list_devices", lambda host, port, timeout=None, tls=None: seen.append(timeout) or [])

    def attach(host, port, busid, vhci, timeout=None, tls=None):
        seen.append(timeout)
        return attachments.Attached(port=0, device=None, host=host, tcp_port=port, busid=busid)

    monkeypatch.setattr(attachments, "attach", attach)
    assert usbip("--timeout", "2.5", "list", "-r", "h").rc == 0
    assert usbip("list", "-r", "h").rc == 0  # None: the client's default, 20 s for the whole exchange
    assert usbip("--timeout", "7", "attach", "-r", "h", "-b", "1-1").rc == 0
    assert usbip("--timeout=0.5", "-d", "attach", "-r", "h", "-b", "1-1").rc == 0
    assert seen == [2.5, None, 7.0, 0.5]
    # the plain attach line is read without argparse, timeout included, as argparse reads it
    fast = cli._fast_args(["--timeout", "7", "attach", "-r", "h", "-b", "1-1"])  # noqa: SLF001
    assert (fast.timeout, fast.remote, fast.busid) == (7.0, "h", "1-1")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "3601", "x", ""])
def test_a_bad_timeout_is_a_usage_error(usbip, value):
    result = usbip("--timeout", value, "list", "-r", "h")
    assert (result.rc, result.out) == (2, "")
    assert len(result.err_lines) == 1 and "timeout" in result.err, result.err


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"), TimeoutError("timed out")])
def test_socket_errors_are_one_line(usbip, monkeypatch, error):
    from usbip.net import client

    def list_devices(host, port, timeout=10.0, tls=None):
        raise error

    monkeypatch.setattr(client, "list_devices", list_devices)
    result = usbip("list", "-r", "h")
    assert (result.rc, result.out) == (1, "")
    assert result.err_lines == ["usbip: error: %s" % (error.strerror or error)]


def test_interrupt_exits_130(usbip, monkeypatch):
    from usbip.net import client

    def list_devices(host, port, timeout=10.0, tls=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(client, "list_devices", list_devices)
    assert usbip("list", "-r", "h").rc == 130


def test_log_sends_messages_to_syslog_too(usbip, monkeypatch, tmp_path):
    import syslog

    sent = []
    monkeypatch.setattr(syslog, "openlog", lambda *args: sent.append(("openlog",) + args))
    monkeypatch.setattr(syslog, "syslog", lambda priority, message: sent.append((priority, message)))
    result = usbip("--log", "bind", "-b", "17-1", sysfs=standard_tree(tmp_path).sysfs())
    assert result.err_lines == ["usbip: info: bind device on busid 17-1: complete"]
    assert sent == [("openlog", "usbip", syslog.LOG_PID, syslog.LOG_USER),
                    (syslog.LOG_INFO, "info: bind device on busid 17-1: complete")]


def test_describe_gives_one_line_for_expected_failures():
    from usbip.errors import UsbipError

    assert common.describe(UsbipError("no", hint="try this")) == "no (try this)"
    assert common.describe(FileNotFoundError(2, "No such file or directory", "/x")) == "/x: No such file or directory"
    assert common.describe(OSError("plain")) == "plain"


# -- entry points and start-up ----------------------------------------------------------
def test_runs_as_a_module():
    done = run_module("version")
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "usbip (usbip-utils %s, Python implementation)\n" % __version__, "")


def test_sysfs_root_comes_from_the_environment_for_subprocesses(tmp_path):
    standard_tree(tmp_path)
    done = run_module("list", "-l", "-p", env={"USBIP_SYSFS_ROOT": str(tmp_path)})
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == ("busid=17-1#usbid=1209:0001#\nbusid=18-1.2#usbid=46f4:0001#\nbusid=18-1.3#usbid=0403:6001#\n"
                           "busid=18-2#usbid=0627:0001#\nbusid=18-3#usbid=08e6:4433#\n")


def test_failure_in_a_subprocess_is_one_line_without_traceback(tmp_path):
    done = run_module("detach", "-p", "3", env={"USBIP_SYSFS_ROOT": str(tmp_path)})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        "usbip: error: vhci_hcd is not loaded (/sys/devices/platform/vhci_hcd.0 is missing) (modprobe vhci-hcd)"]


def test_start_up_imports_only_what_the_command_needs():
    """An attach is benchmarked against the C tool: no asyncio, no logging, no names database."""
    code = (
        "import sys\n"
        "from usbip.cli.usbip import main\n"
        "main(['version'])\n"
        "early = {m for m in ('dataclasses', 'socket', 'json', 'logging', 'asyncio') if m in sys.modules}\n"
        "main(['-t', '1', 'attach', '-r', '127.0.0.1', '-b', '1-1'])\n"
        "late = {m for m in ('asyncio', 'logging', 'json', 'usbip.sysfs.names') if m in sys.modules}\n"
        "print(sorted(early), sorted(late))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=MODULE_UTILS, USBIP_SYSFS_ROOT="/nonexistent"))
    assert done.stdout.splitlines()[-1] == "[] []", done.stderr
