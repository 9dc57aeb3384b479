# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the roles' target-side scripts as the roles do, with fake system tools on ``PATH``.

The roles read a script with ``lookup('ansible.builtin.file')`` (which strips
trailing whitespace) and run it as ``python3 -c <text> <args>`` on the target,
with a JSON request on stdin; the script answers one JSON object on stdout.
:func:`run_script` does the same here, so the tests exercise the text the
roles ship. The fake tools (``ufw``, ``firewall-cmd``, ``systemctl``) are
shell scripts: a Python one takes some 20 ms to start, and one run of the
firewall script calls ufw two dozen times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

REPO = Path(__file__).resolve().parents[3]


def script_text(relative: str) -> str:
    """The script as ``lookup('ansible.builtin.file', ...)`` hands it to the command module."""
    return (REPO / relative).read_text().rstrip()


def run_script(text: str, args: Iterable[str], stdin: str = "", path: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None) -> Tuple[int, Dict[str, Any]]:
    """``python3 -c text args`` with ``stdin``; returns the exit status and the decoded JSON answer.

    ``path`` is the whole ``PATH`` the script sees (the fake tools' directory, say).
    Anything on stderr (a traceback) fails the test: the scripts answer in JSON only.
    """
    environment = {"LANG": "C.UTF-8", "PATH": path if path is not None else os.environ.get("PATH", "")}
    environment.update(env or {})
    proc = subprocess.run([sys.executable, "-c", text] + list(args), input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=environment, timeout=30, check=False)
    assert proc.stderr == "", proc.stderr
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("not one JSON object on stdout: %r" % proc.stdout) from None
    return proc.returncode, answer


def write_tool(directory: Path, name: str, script: str) -> Path:
    """An executable ``directory/name`` from ``script`` (a shell script: a fake tool starts in a millisecond)."""
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(script)
    tool.chmod(0o755)
    return tool


#: Shell lines that append the tool's arguments to the file $LOG, each followed by a unit separator.
LOG_ARGV = """for arg in "$@"; do printf '%s\\037' "$arg"; done >>"$LOG"
echo >>"$LOG"
"""


def read_log(log: Path) -> List[List[str]]:
    """The argument lists a fake tool logged with LOG_ARGV (none when it never ran)."""
    if not log.exists():
        return []
    return [line.split("\x1f")[:-1] for line in log.read_text().splitlines()]
