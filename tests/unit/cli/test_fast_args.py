"""The argparse-free parser of plain ``attach``/``detach`` lines must agree with argparse, or step aside.

``_fast_args`` exists for start-up time only (see performance.md); it may
decline any line (returning None hands it to argparse), but what it accepts it
must read exactly as argparse does.
"""

from __future__ import annotations

import pytest

from usbip.cli import usbip as cli
from usbip.cli.common import ParserExit, UsageError

FIELDS = ("command", "debug", "log", "tcp_port", "remote", "busid", "port")

LINES = [
    ["attach", "-r", "server1", "-b", "1-1"],
    ["attach", "--remote", "10.0.0.1", "--busid", "1-1.4"],
    ["attach", "--remote=10.0.0.1", "--busid=1-1.4"],
    ["attach", "-rserver1", "-b1-1"],
    ["attach", "-r", "server1", "-d", "usbip-vudc.3"],
    ["-d", "attach", "-r", "server1", "-b", "1-1"],
    ["--debug", "--log", "attach", "-r", "h", "-b", "2-1"],
    ["-t", "3241", "attach", "-r", "h", "-b", "2-1"],
    ["-t3241", "attach", "-r", "h", "-b", "2-1"],
    ["--tcp-port=3241", "attach", "-r", "h", "-b", "2-1"],
    ["--tcp-port", "65535", "attach", "-r", "h", "-b", "2-1"],
    ["detach", "-p", "0"],
    ["detach", "--port", "15"],
    ["detach", "-p15"],
    ["detach", "--port=7"],
    # lines it must decline (argparse decides: an error, a help text, or a reading of its own)
    ["attach", "-r", "h"],
    ["attach", "-b", "1-1"],
    ["attach", "-r", "h", "-b", "../1-1"],
    ["attach", "-r", "h", "-b", "1-1", "extra"],
    ["attach", "-r=h", "-b", "1-1"],
    ["attach", "--rem", "h", "-b", "1-1"],
    ["-t", "70000", "attach", "-r", "h", "-b", "1-1"],
    ["-t", "0x10", "attach", "-r", "h", "-b", "1-1"],
    ["-dl", "attach", "-r", "h", "-b", "1-1"],
    ["detach", "-p", "-1"],
    ["detach", "-p", "x"],
    ["detach"],
    ["attach", "--help"],
    ["list", "-l"],
    ["--tls-ca", "ca.crt", "attach", "-r", "h", "-b", "1-1"],
    [],
]


def argparse_reading(argv):
    parser, _commands = cli._parser()  # noqa: SLF001
    try:
        args = parser.parse_args(argv)
    except (UsageError, ParserExit):
        return None
    return {f: getattr(args, f, None) for f in FIELDS}


@pytest.mark.parametrize("argv", LINES, ids=lambda argv: " ".join(argv) or "(empty)")
def test_what_the_fast_parser_accepts_argparse_reads_the_same(argv):
    fast = cli._fast_args(argv)  # noqa: SLF001
    if fast is None:
        return  # declined: argparse parses it, as for every other line
    assert {f: getattr(fast, f, None) for f in FIELDS} == argparse_reading(argv)


def test_the_plain_lines_are_taken_fast():
    # The point of the fast path: the common spellings never import argparse.
    for argv in LINES[:15]:
        assert cli._fast_args(argv) is not None, argv  # noqa: SLF001


def test_lines_that_need_argparse_are_declined():
    for argv in LINES[15:]:
        assert cli._fast_args(argv) is None, argv  # noqa: SLF001
