# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment:
    """The option every changing usbip module shares."""

    DOCUMENTATION = r"""
options:
  load_kernel_modules:
    description:
      - Load the kernel modules the task needs with C(modprobe) when they are not loaded yet.
      - Loading a module is reported as a change (in check mode, that it would be loaded), and the
        names are returned in C(kernel_modules).
      - When V(false) and a module is missing, the task fails with a hint naming the module.
      - In check mode each module that would be loaded is looked up with C(modprobe -n), which loads
        nothing; a module the running kernel lacks fails the task as the load would.
    type: bool
    default: true
notes:
  - Needs root on the target (C(become=true)) for every change; check mode only reads, so it works
    as any user that may read sysfs.
  - C(pyudev) is not needed on the target.
"""
