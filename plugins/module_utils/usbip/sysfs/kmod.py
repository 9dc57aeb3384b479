# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel modules behind the drivers, as the drivers declare them.

Each driver file says which module provides its kernel interface and which
paths show that it is loaded (``host.KERNEL_MODULE``, ``vhci.KERNEL_MODULE``,
``vudc.kernel_module(n)``, ``gadget.KERNEL_MODULE``...); whoever loads modules
(the Ansible modules, with ``modprobe``) only reads these declarations, so a
driver's paths and its module's name cannot drift apart.

:class:`AfterLoad` is how a dry run plans past a module it has not loaded: the
drivers read the tree as it would be with the module in place, and so plan
the same changes a real run makes, instead of the caller guessing them. Only a
module that ``modprobe -n`` finds is assumed so (``modprobe_args(dry_run=True)``).
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any, Iterable, List, Optional, Set, Tuple

from .fs import Sysfs


@dataclasses.dataclass(frozen=True)
class KernelModule:
    """A kernel module and the paths it makes.

    ``probes``: any one of them existing shows the module is loaded.
    ``creates``: further paths a load with these ``args`` makes (a dry run
    reads them as present). ``alias``: what modprobe is given when not the name.
    """

    name: str
    probes: Tuple[str, ...]
    args: Tuple[str, ...] = ()
    alias: Optional[str] = None
    creates: Tuple[str, ...] = ()

    def modprobe_args(self, dry_run: bool = False) -> List[str]:
        """The arguments after ``modprobe``.

        ``dry_run`` adds ``-n``: modprobe then resolves the module and its
        dependencies for the running kernel without loading anything, and fails
        as the load would where the module does not exist. A check mode asks
        this before it plans past the load.
        """
        return (["-n"] if dry_run else []) + [self.alias or self.name] + list(self.args)

    def loaded(self, sysfs: Sysfs) -> bool:
        return any(sysfs.exists(path) for path in self.probes)


def by_instances(name: str, driver: str, instances: int, device_dir: str, device_prefix: str) -> KernelModule:
    """A module loaded with ``num=<instances>`` that makes ``<device_prefix>.0`` .. ``.<instances-1>``."""
    return KernelModule(name, (driver,), ("num=%d" % instances,),
                        creates=tuple("%s/%s.%d" % (device_dir, device_prefix, i) for i in range(instances)))


class AfterLoad:
    """A dry-run sysfs as it would read once ``assume_loaded`` modules are loaded.

    Every change still goes to the wrapped :class:`Sysfs` (and its journal);
    only reads of a module's probes and created paths (and their parent
    directories) answer as the kernel would after the load.
    """

    def __init__(self, sysfs: Sysfs) -> None:
        self._sysfs = sysfs
        self._present: Set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sysfs, name)

    def assume_loaded(self, modules: Iterable[KernelModule]) -> None:
        for module in modules:
            for path in module.probes + module.creates:
                while path not in ("/", ""):
                    self._present.add(path)
                    path = posixpath.dirname(path)

    def exists(self, path: str) -> bool:
        return path in self._present or self._sysfs.exists(path)

    def isdir(self, path: str) -> bool:
        return path in self._present or self._sysfs.isdir(path)

    def listdir(self, path: str) -> List[str]:
        assumed = {posixpath.basename(p) for p in self._present if posixpath.dirname(p) == path}
        return sorted(set(self._sysfs.listdir(path)) | assumed)
