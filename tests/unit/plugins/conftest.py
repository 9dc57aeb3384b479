# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the modules importable as ``ansible_collections.usbip.usbip`` and run them against fake trees.

* A temporary ``ansible_collections/usbip/usbip`` symlink to this checkout goes
  on ``sys.path``, so the modules' imports resolve as they do on a target.
* The stack is the same module objects under both names: the fake trees in
  ``tests/unit/sysfs`` import it as ``usbip`` (pytest's ``pythonpath`` in pyproject.toml) and
  raise its exceptions, which the modules must catch as their own.
* :func:`run_module` calls a module's ``main()`` with arguments, the usual
  ``AnsibleExitJson``/``AnsibleFailJson`` way, with the module's sysfs
  replaced by a fake one and ``modprobe`` by a fake that knows every module
  but those in ``missing`` (or by a real executable: ``real_commands``).
"""

from __future__ import annotations

import atexit
import importlib
import os
import pkgutil
import shutil
import sys
import tempfile
from typing import Any, Callable, Dict, Optional

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COLLECTION = "ansible_collections.usbip.usbip"
STACK = COLLECTION + ".plugins.module_utils.usbip"

_root = tempfile.mkdtemp(prefix="usbip-collections-")
atexit.register(shutil.rmtree, _root, True)
os.makedirs(os.path.join(_root, "ansible_collections", "usbip"))
os.symlink(REPO, os.path.join(_root, "ansible_collections", "usbip", "usbip"))
# A tree made at run time, so not in pyproject.toml's pytest ``pythonpath`` (which has the fake kernel trees).
sys.path.insert(0, _root)


def _alias_stack() -> None:
    """Register every ``usbip.*`` module under its collection name too (one set of classes)."""
    import usbip

    sys.modules[STACK] = usbip
    for info in pkgutil.walk_packages(usbip.__path__, "usbip."):
        module = importlib.import_module(info.name)
        sys.modules[STACK + info.name[len("usbip"):]] = module


_alias_stack()

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402


class AnsibleExitJson(SystemExit):
    """exit_json was called; ``result`` holds its arguments (SystemExit, as the real one exits)."""

    def __init__(self, result: Dict[str, Any]) -> None:
        super().__init__(0)
        self.result = result


class AnsibleFailJson(SystemExit):
    def __init__(self, result: Dict[str, Any]) -> None:
        super().__init__(1)
        self.result = result


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    raise AnsibleExitJson(kwargs)


def _fail_json(self, msg, **kwargs):
    kwargs["failed"] = True
    kwargs["msg"] = msg
    raise AnsibleFailJson(kwargs)


#: What modprobe prints for a module the running kernel does not have (the real text, a made-up release).
NOT_FOUND = "modprobe: FATAL: Module %s not found in directory /lib/modules/6.1.0-test"
#: AnsibleModule.run_command itself, for runs that execute a real (fake) program.
REAL_RUN_COMMAND = basic.AnsibleModule.run_command


class ModuleRun:
    """Runs a module's main() with a fake sysfs and a fake modprobe.

    ``commands`` records the commands run that change something (``modprobe
    usbip-host``), ``probes`` the dry runs (``modprobe -n usbip-host``), which
    check mode runs and which load nothing. ``missing`` names the modules (as
    modprobe is given them) that the fake modprobe does not find, in a load and
    in a dry run alike; ``command_rc`` fails every load (not the dry runs, which
    need no root); ``installed = False`` makes modprobe absent from the target.
    """

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch = monkeypatch
        self.sysfs = None
        self.commands = []
        self.probes = []
        self.command_rc = 0
        self.missing = set()
        self.installed = True
        monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
        monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)
        monkeypatch.setattr(basic.AnsibleModule, "run_command",
                            lambda module, args, **kw: self._run_command(args, **kw))
        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path",
                            lambda module, name, *a, **kw: "/sbin/" + name if self.installed else None)

    def _run_command(self, args, **kwargs):
        args = list(args)
        dry_run = args[1:2] == ["-n"]
        (self.probes if dry_run else self.commands).append(args)
        name = args[2 if dry_run else 1]
        if name in self.missing:
            return 1, "", NOT_FOUND % name
        if self.command_rc != 0 and not dry_run:
            return self.command_rc, "", "modprobe: ERROR: could not insert '%s': Operation not permitted" % name
        return 0, "", ""

    def real_commands(self, bin_dir) -> None:
        """Run commands for real, ``modprobe`` being ``<bin_dir>/modprobe`` (which need not exist)."""
        self.monkeypatch.setattr(basic.AnsibleModule, "run_command", REAL_RUN_COMMAND)
        self.monkeypatch.setattr(basic.AnsibleModule, "get_bin_path",
                                 lambda module, name, *a, **kw: os.path.join(str(bin_dir), name))

    def __call__(self, module: Any, args: Dict[str, Any], sysfs_factory: Optional[Callable[[bool], Any]],
                 check_mode: bool = False, diff: bool = False) -> Dict[str, Any]:
        """Run; returns the exit_json result (with ``failed`` set on fail_json).

        ``sysfs_factory`` replaces ``_usbip_module.new_sysfs``; None keeps the
        module's own, which chooses the dry run.
        """
        from ansible_collections.usbip.usbip.plugins.module_utils import _usbip_module

        def factory(dry_run: bool):
            self.sysfs = sysfs_factory(dry_run)
            return self.sysfs

        if sysfs_factory is not None:
            self.monkeypatch.setattr(_usbip_module, "new_sysfs", factory)
        full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(full):
            try:
                module.main()
            except (AnsibleExitJson, AnsibleFailJson) as done:
                return done.result
        raise AssertionError("the module returned without exit_json or fail_json")

    @property
    def journal(self):
        return list(self.sysfs.journal) if self.sysfs is not None else []


@pytest.fixture
def run_module(monkeypatch) -> ModuleRun:
    return ModuleRun(monkeypatch)
