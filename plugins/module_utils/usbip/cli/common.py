# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every command line of the package shares: argument errors, messages, exit codes.

The C tools report on stderr as ``<prog>: <level>: <message>`` and scripts
grep for those lines, so every front end keeps that shape. A failure the
package raises on purpose is one such line and an exit status, never a
traceback. Nothing here imports :mod:`logging`: a short-lived command such as
``usbip attach`` is benchmarked against the C tool, and its few messages do
not need the machinery; long-running programs log through :mod:`usbip.cli.logs`
(see :func:`run_program`).
For the same reason :mod:`argparse` is imported only when :class:`Parser` is
first used: ``usbip attach`` and ``detach`` parse their usual command lines
without it (see ``usbip._fast_args``).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable, List, NoReturn, Optional

from ..errors import InvalidArgument, UsbipError

EXIT_OK = 0
#: The request could not be carried out (device missing, server refused...).
EXIT_FAILURE = 1
#: The command line itself was wrong; nothing was touched.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A malformed command line, found before anything was read or changed."""


class ParserExit(Exception):
    """argparse wanted to end the program (``--help``); main returns ``status`` instead."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _parser_class() -> type:
    import argparse  # noqa: PLC0415 - see the module docstring

    class Parser(argparse.ArgumentParser):
        """An ArgumentParser that raises instead of exiting.

        ``main(argv)`` is called by tests and by other Python code, so it must
        return a status rather than call :func:`sys.exit`; and argument errors are
        reported as one line, like every other error, instead of argparse's
        usage block.
        """

        def error(self, message: str) -> NoReturn:
            raise UsageError(message)

        def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
            if message:
                sys.stderr.write(message)
            raise ParserExit(status)

    Parser.__module__, Parser.__qualname__ = __name__, "Parser"
    return Parser


if TYPE_CHECKING:
    import argparse

    class Parser(argparse.ArgumentParser):
        """See :func:`_parser_class`."""


def __getattr__(name: str) -> Any:
    """``Parser``, the ArgumentParser of every front end, created on first use."""
    if name == "Parser":
        globals()["Parser"] = parser = _parser_class()
        return parser
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def checked(validator: Any) -> Any:
    """Wrap a ``validate`` function as an argparse ``type``.

    Options are then validated while the command line is parsed, before any
    command code (and so any sysfs access) runs, and the error names the option.
    """

    def convert(value: str) -> Any:
        try:
            return validator(value)
        except InvalidArgument as err:
            import argparse  # noqa: PLC0415 - only argparse calls this, so it is loaded already

            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = getattr(validator, "__name__", "value")
    return convert


def describe(err: BaseException) -> str:
    """One line for an expected failure; the hint, if any, stays on it."""
    if isinstance(err, UsbipError):
        return str(err)
    if isinstance(err, OSError):
        reason = err.strerror or str(err)
        return "%s: %s" % (err.filename, reason) if err.filename else reason
    return str(err) or type(err).__name__


class Reporter:
    """Messages in the C tools' shape, to stderr and, with ``--log``, to syslog.

    The stream is looked up on every message so that a replaced
    ``sys.stderr`` (tests, a daemon's redirection) is honoured.
    """

    def __init__(self, prog: str, debug: bool = False, syslog: bool = False) -> None:
        self.prog = prog
        self.debug_enabled = debug
        self._syslog = None
        if syslog:
            import syslog as _syslog  # noqa: PLC0415 - only with --log

            _syslog.openlog(prog, _syslog.LOG_PID, _syslog.LOG_USER)
            self._syslog = _syslog

    def _emit(self, level: str, priority: str, message: str) -> None:
        text = "%s: %s: %s" % (self.prog, level, message)
        if self._syslog is not None:
            self._syslog.syslog(getattr(self._syslog, priority), "%s: %s" % (level, message))
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # stderr closed: there is nobody left to tell

    def error(self, message: str) -> None:
        self._emit("error", "LOG_ERR", message)

    def info(self, message: str) -> None:
        self._emit("info", "LOG_INFO", message)

    def debug(self, message: str) -> None:
        if self.debug_enabled:
            self._emit("debug", "LOG_DEBUG", message)

    def failure(self, err: BaseException) -> int:
        """Report an expected failure; returns the exit status it deserves."""
        self.error(describe(err))
        return EXIT_USAGE if isinstance(err, (InvalidArgument, UsageError)) else EXIT_FAILURE


def write_stdout(text: str) -> None:
    """Write a command's output; a reader that went away (``| head``) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at nothing so that the interpreter's final flush is quiet too.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


def run_program(prog: str, parser: Callable[[], Any], body: Callable[[Any], int], argv: Optional[List[str]] = None,
                syslog: Callable[[Any], bool] = lambda args: False) -> int:
    """``main`` of a long-running program (``usbipd``, ``usbip-attachd``); returns the exit status.

    Parses ``argv`` with ``parser()`` (which has ``-d/--debug``), routes the
    logger named ``prog`` to stderr, or to syslog when ``syslog(args)`` says
    so, through :mod:`usbip.cli.logs` (a queue and a writer thread: a slow log
    never stalls the program), and runs ``body(args)``: an expected failure is
    one line and an exit status, an interrupt exits 130, never a traceback.
    What is still queued is written out before it returns.
    """
    reporter = Reporter(prog)
    try:
        args = parser().parse_args(argv)
    except ParserExit as done:
        return done.status
    except UsageError as err:
        return reporter.failure(err)
    from . import logs  # noqa: PLC0415 - see the module docstring

    logs.setup(prog, prog, args.debug, syslog(args))
    try:
        return body(args)
    except UsbipError as err:
        return reporter.failure(err)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        logs.stop()


def setup_logging(logger_name: str, prog: str, debug: bool = False, syslog: bool = False) -> Any:
    """Route a :mod:`logging` logger to stderr (or syslog) in the same shape as :class:`Reporter`.

    The same as :func:`usbip.cli.logs.setup` (kept for callers of this name); returns the logger.
    """
    from . import logs  # noqa: PLC0415 - see the module docstring

    return logs.setup(logger_name, prog, debug, syslog)
