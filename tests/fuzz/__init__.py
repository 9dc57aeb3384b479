# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzzers of the USB/IP stack.

Long runs, from the repository root (short runs of the same code are part of
``tests/unit/fuzz``, hence of ``make test``)::

    .venv/bin/python -m tests.fuzz.decoders --inputs 1000000               # own mutation fuzzer
    .venv/bin/python -m tests.fuzz.decoders --engine atheris --inputs 1000000   # coverage-guided
    .venv/bin/python -m tests.fuzz.server --inputs 1000000                 # a live usbipd on 127.0.0.1

The stack is imported from this checkout, as the unit tests do. The long runs
are scripts, outside pytest and its ``pythonpath`` (pyproject.toml), so this is
the one place where they get the same import path: the stack as ``usbip`` and
the fake kernel trees of ``tests/unit/sysfs`` (the live server fuzzes a fake one).
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_UTILS = os.path.join(REPO, "plugins", "module_utils")
FAKE_TREES = os.path.join(REPO, "tests", "unit", "sysfs")
for _path in (FAKE_TREES, MODULE_UTILS):
    if _path not in sys.path:
        sys.path.insert(0, _path)
