# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of a usbip module: the sysfs it works on, kernel modules, failure, before/after diffs.

Private to this collection (the leading underscore): other collections and
local modules must not import it; it changes without notice.

The stack under ``module_utils/usbip`` knows nothing about Ansible. This file
is where a module body meets ``AnsibleModule``: every :class:`UsbipError` is
turned into ``fail_json`` (message, hint, the sysfs changes already made), the
kernel modules the drivers declare are loaded with ``modprobe`` (in check mode,
found with ``modprobe -n``), and the before and after states become a diff.
"""

from __future__ import annotations

import errno
import traceback
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

from ansible_collections.usbip.usbip.plugins.module_utils.usbip.errors import UsbipError
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.net.client import ConnectError
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.errors import SysfsError
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.fs import Sysfs
from ansible_collections.usbip.usbip.plugins.module_utils.usbip.sysfs.kmod import AfterLoad, KernelModule

#: Kernel TLS, for USB/IP over TLS (``usbip.net.tls``); not a sysfs driver, so declared here.
KTLS = KernelModule("tls", ("/sys/module/tls",))
#: What a failed modprobe (a load, or its dry run in check mode) suggests.
MODPROBE_HINT = "run as root; the module must exist for the running kernel (Debian: linux-image-$(uname -r))"


def new_sysfs(check_mode: bool) -> Sysfs:
    """The kernel's sysfs; in check mode every change is journaled instead of made.

    Unit tests replace this function to run the modules against fake trees.
    """
    return Sysfs(dry_run=check_mode)


class Context:
    """One module run: its sysfs (dry-run in check mode), kernel modules loaded, failures."""

    def __init__(self, module: Any, read_only: bool = False) -> None:
        self.module = module
        self.read_only = read_only
        self.check_mode = bool(module.check_mode)
        sysfs = new_sysfs(self.check_mode)
        # In check mode the drivers plan past the modules that would be loaded, as if they were.
        self.sysfs: Union[Sysfs, AfterLoad] = AfterLoad(sysfs) if self.check_mode else sysfs
        self.kernel_modules: List[str] = []

    @property
    def diff_mode(self) -> bool:
        return bool(getattr(self.module, "_diff", False))

    def changes(self) -> List[Dict[str, str]]:
        """The sysfs journal: what was changed, or in check mode what would have been."""
        return [{"op": c.op, "path": c.path, "value": c.value} for c in self.sysfs.journal]

    def missing_kernel_modules(self, wanted: Iterable[KernelModule]) -> List[KernelModule]:
        return [m for m in wanted if not m.loaded(self.sysfs)]

    def load_kernel_modules(self, wanted: Iterable[KernelModule]) -> List[str]:
        """Load the modules not loaded yet (if the task allows it); returns their names.

        In check mode nothing is loaded: ``modprobe -n`` resolves each module
        for the running kernel as the load would, and fails the task as the
        load would where it cannot; a module it finds is reported as one that
        would be loaded, and the sysfs reads as it would after the load. When
        loading is not allowed, nothing is done here and the driver's own check
        fails later with the ``modprobe`` hint.
        """
        missing = self.missing_kernel_modules(wanted)
        if not missing or not self.module.params.get("load_kernel_modules", True):
            return []
        names = [m.name for m in missing]
        modprobe = self.module.get_bin_path("modprobe", required=False, opt_dirs=["/sbin", "/usr/sbin"])
        if modprobe is None:
            self._no_modprobe(names)
        for m in missing:
            self._modprobe(modprobe, m, names)
            self.kernel_modules.append(m.name)
            if self.check_mode:
                self.sysfs.assume_loaded([m])
        return names

    def _modprobe(self, modprobe: str, module: KernelModule, names: List[str]) -> None:
        """``modprobe`` the module, or in check mode its dry run (``-n``); fail as a load fails."""
        try:
            rc, out, err = self.module.run_command([modprobe] + module.modprobe_args(dry_run=self.check_mode),
                                                   handle_exceptions=False)
        except OSError:  # found a moment ago, gone or not executable now
            self._no_modprobe(names)
            return
        if rc != 0:
            self.fail_msg("modprobe %s failed (rc %d): %s" % (module.name, rc, (err or out).strip()),
                          hint=MODPROBE_HINT)

    def _no_modprobe(self, names: List[str]) -> None:
        self.fail_msg("modprobe is not installed; cannot load %s" % ", ".join(names),
                      hint="install kmod, or load the modules otherwise and set load_kernel_modules: false")

    def _changed_so_far(self) -> bool:
        """On failure: whether anything was really changed before it (never in check mode)."""
        return not self.check_mode and bool(self.kernel_modules or self.sysfs.journal)

    def fail_msg(self, msg: str, hint: Optional[str] = None, **extra: Any) -> None:
        result: Dict[str, Any] = {"changed": self._changed_so_far()}
        if hint:
            result["hint"] = hint
            msg = "%s (%s)" % (msg, hint)
        result.update(extra)
        self.module.fail_json(msg=msg, kernel_modules=self.kernel_modules, sysfs_changes=self.changes(), **result)

    def fail(self, err: BaseException) -> None:
        """An error from the stack: its message (which carries the hint) plus the hint on its own."""
        extra: Dict[str, Any] = {"error": type(err).__name__}
        hint = getattr(err, "hint", None)
        if isinstance(err, SysfsError):
            extra.update(path=err.path, errno=err.errno)
        if isinstance(err, ConnectError) and not hint:
            hint = "is usbipd running on the server, and may this host reach its TCP port?"
            extra["hint"] = hint
            msg = "%s (%s)" % (err, hint)
        else:
            msg = str(err)
        if hint:
            extra["hint"] = hint
        if isinstance(err, OSError) and not isinstance(err, UsbipError):
            if err.errno in (errno.EACCES, errno.EPERM):
                extra["hint"] = "run as root (become: true)"
            msg = "%s%s" % (err, " (%s)" % extra["hint"] if "hint" in extra else "")
        self.module.fail_json(msg=msg, changed=self._changed_so_far(), kernel_modules=self.kernel_modules,
                              sysfs_changes=self.changes(), **extra)

    def run(self, body: Callable[[], Dict[str, Any]]) -> None:
        """Run the module body; exit with its result, or fail with the error's message and hint."""
        try:
            result = body()
        except (UsbipError, OSError) as err:
            self.fail(err)
            return
        except Exception as err:  # a bug: report it with the traceback instead of a bare MODULE FAILURE
            self.module.fail_json(msg="unexpected %s: %s" % (type(err).__name__, err),
                                  exception=traceback.format_exc(), kernel_modules=self.kernel_modules)
            return
        if not self.read_only:
            if self.kernel_modules:
                result["changed"] = True
            result.setdefault("kernel_modules", self.kernel_modules)
            result.setdefault("sysfs_changes", self.changes())
        self.module.exit_json(**result)


def run(module: Any, converge: Callable[[Context], Dict[str, Any]], read_only: bool = False) -> None:
    """A module's main() after its argument spec: ``converge(ctx)`` run in a :class:`Context`, then exit."""
    ctx = Context(module, read_only)
    ctx.run(lambda: converge(ctx))


# -- diffs ---------------------------------------------------------------------------
def _scalar(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex()
    text = str(value)
    return text if text and text.strip() == text and ": " not in text else repr(text)


def render(data: Mapping[str, Any], indent: int = 0) -> str:
    """A YAML-like text of nested mappings and lists, line per value, for readable diffs."""
    lines = []
    pad = "  " * indent
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines.append("%s%s:%s\n" % (pad, key, "" if value else " {}"))
            lines.append(render(value, indent + 1))
        elif isinstance(value, (list, tuple)):
            lines.append("%s%s:%s\n" % (pad, key, "" if value else " []"))
            lines.extend("%s  - %s\n" % (pad, _scalar(item)) for item in value)
        else:
            lines.append("%s%s: %s\n" % (pad, key, _scalar(value)))
    return "".join(lines)


def diff(before: Any, after: Any, before_header: str, after_header: Optional[str] = None) -> Dict[str, str]:
    """A diff entry; mappings are rendered, strings kept (``"absent\\n"`` and the like)."""
    return {
        "before": before if isinstance(before, str) else render(before),
        "after": after if isinstance(after, str) else render(after),
        "before_header": before_header,
        "after_header": after_header or before_header,
    }
