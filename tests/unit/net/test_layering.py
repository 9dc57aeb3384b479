# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""net/ is wire I/O only: it imports the codec, never the kernel drivers nor the daemon's model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import usbip

PACKAGE = Path(usbip.__file__).parent
NET = sorted((PACKAGE / "net").glob("*.py"))
FORBIDDEN = ("usbip.sysfs", "usbip.daemon", "usbip.cli", "usbip.attachments", "usbip.matching")


def imported_modules(path: Path):
    """Absolute names of every module ``path`` imports, relative imports resolved (lazy ones too)."""
    package = ["usbip"] + list(path.relative_to(PACKAGE).parent.parts)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module
            yield from ("%s.%s" % (module, alias.name) for alias in node.names)


def test_the_net_package_has_modules():
    assert {p.name for p in NET} >= {"client.py", "server.py", "sockets.py", "tls.py"}


@pytest.mark.parametrize("path", NET, ids=lambda p: p.name)
def test_net_imports_neither_sysfs_nor_daemon(path):
    bad = sorted(m for m in imported_modules(path) if m.startswith(FORBIDDEN))
    assert bad == [], "%s imports %s" % (path.name, ", ".join(bad))


def test_the_checker_sees_relative_imports():
    # The rule is only as good as the parser: a relative import of sysfs must be seen.
    fake = PACKAGE / "net" / "server.py"
    names = set(imported_modules(fake))
    assert "usbip.protocol" in names and "usbip.errors" in names
