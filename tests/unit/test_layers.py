# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack's layers, as docs/architecture.md draws them, checked on the source.

Every import inside ``plugins/module_utils/usbip`` is read with :mod:`ast`
(relative imports resolved, imports inside functions included) and compared
with what its folder may import. A new import across a layer fails here with
the file, the line and the rule, instead of surfacing later as a cycle or as
a network parser that reaches sysfs.
"""

from __future__ import annotations

import ast
import pathlib
import sys
from typing import Dict, FrozenSet, Iterator, List, Tuple

STACK = pathlib.Path(__file__).resolve().parents[2] / "plugins" / "module_utils" / "usbip"
REPO = STACK.parents[2]

# The first component below the package of each imported module ('sysfs', 'net', 'errors', ...).
ALLOWED: Dict[str, FrozenSet[str]] = {
    "errors": frozenset(),
    "device": frozenset(),
    "validate": frozenset({"errors"}),
    "protocol": frozenset({"errors", "device"}),
    "sysfs": frozenset({"errors", "device", "validate"}),
    "throttle": frozenset(),
    "net": frozenset({"protocol", "errors", "device", "validate", "throttle"}),
    "matching": frozenset({"sysfs", "device", "errors"}),
    "attachments": frozenset({"net", "sysfs", "matching", "validate", "errors", "device", "protocol"}),
    "daemon": frozenset({"sysfs", "protocol", "matching", "validate", "errors", "device", "throttle"}),
    "config": frozenset({"daemon", "matching", "protocol", "validate", "errors"}),
    "cli": frozenset({"config", "net", "sysfs", "daemon", "attachments", "matching", "protocol", "validate",
                      "errors", "device", "__init__"}),
    "__init__": frozenset(),
}
# Ansible is never imported by the stack: it is also the pip package behind the commands.
FOREIGN_FORBIDDEN = ("ansible", "ansible_collections")


def _layer(path: pathlib.Path) -> str:
    rel = path.relative_to(STACK)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: pathlib.Path) -> Iterator[Tuple[int, str, bool]]:
    """(line, absolute dotted module below the package or a foreign module, is_internal) per import."""
    package = list(path.relative_to(STACK).parent.parts)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, node.module or "", False
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            if node.level - 1 > len(package):
                raise AssertionError("%s:%d imports above the package" % (path, node.lineno))
            if node.module:
                yield node.lineno, ".".join(base + node.module.split(".")), True
            else:  # from . import a, b: a name is a module of that package, or something its __init__ defines
                for alias in node.names:
                    module = STACK.joinpath(*base, alias.name)
                    is_module = module.is_dir() or module.with_suffix(".py").is_file()
                    yield node.lineno, ".".join(base + [alias.name] if is_module else base), True
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, False


def _violations() -> List[str]:
    found = []
    for path in sorted(STACK.rglob("*.py")):
        layer = _layer(path)
        for line, module, internal in _imports(path):
            where = "%s:%d" % (path.relative_to(REPO), line)
            if not internal:
                if module.split(".")[0] in FOREIGN_FORBIDDEN:
                    found.append("%s imports %s: the stack never imports Ansible" % (where, module))
                elif module.split(".")[0] == "usbip":
                    found.append("%s imports %s absolutely: the stack uses relative imports" % (where, module))
                continue
            target = module.split(".")[0] if module else "__init__"
            if target == layer:
                continue
            if target not in ALLOWED[layer]:
                found.append("%s: %s/ may not import %s (allowed: %s)"
                             % (where, layer, module, ", ".join(sorted(ALLOWED[layer])) or "nothing"))
    return found


def test_every_layer_imports_only_what_it_may():
    assert _violations() == []


def test_every_folder_and_file_of_the_stack_has_a_rule():
    layers = {_layer(p) for p in STACK.rglob("*.py")}
    assert layers - set(ALLOWED) == set()


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The rule must be able to fail: a net module that reaches sysfs is reported."""
    fake = tmp_path / "usbip"
    (fake / "net").mkdir(parents=True)
    (fake / "net" / "leak.py").write_text("from ..sysfs.vhci import VhciDriver\nfrom . import tls\n")
    monkeypatch.setattr(sys.modules[__name__], "STACK", fake)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert _violations() == ["usbip/net/leak.py:1: net/ may not import sysfs.vhci "
                             "(allowed: device, errors, protocol, throttle, validate)"]


def test_no_module_of_the_stack_shadows_the_standard_library():
    """``usbip/select.py`` once hid :mod:`select` from any script run inside the package folder."""
    names = {p.stem for p in STACK.rglob("*.py")} | {p.name for p in STACK.rglob("*") if p.is_dir()}
    assert sorted(names & set(sys.stdlib_module_names)) == []
