# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment:
    """What the usbip modules that change the target share: author and attributes.

    Private to this collection (the leading underscore), like module_utils: it
    changes without notice. Ansible merges attributes field by field, and the
    module's own fields and those of the fragment listed first win: modules list
    this one before ``ansible.builtin.action_common_attributes`` (whose platform
    ``support`` is N/A). The words that differ per module (what the diff shows,
    which kernel modules) are in each module's description.
    """

    DOCUMENTATION = r"""
author:
  - usbip.usbip contributors (@usbip)
attributes:
  check_mode:
    support: full
    details: Nothing is written; RV(sysfs_changes) lists the changes the task would make, in order.
  diff_mode:
    support: full
    details: The diff shows the state the task manages, before and after; the description says which.
  platform:
    support: full
    platforms: posix
    details: Linux, with the kernel modules the description names (see O(load_kernel_modules)).
"""
