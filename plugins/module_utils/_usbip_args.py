# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument spec fragments that several usbip modules share.

Private to this collection (the leading underscore): other collections and
local modules must not import it; it changes without notice. The options are
documented in the modules and in the ``usbip.usbip.kernel_modules`` fragment.
"""

from __future__ import annotations

from typing import Any, Dict

#: ``load_kernel_modules``, read by ``_usbip_module.Context.load_kernel_modules``.
KERNEL_MODULES_ARGS: Dict[str, Dict[str, Any]] = {
    "load_kernel_modules": {"type": "bool", "default": True},
}


def match_args(*fields: str) -> Dict[str, Any]:
    """The ``match`` suboption; vendor/product are ``raw`` so that ints and hex strings both reach the stack."""
    options = {
        "vendor": {"type": "raw"},
        "product": {"type": "raw"},
        "serial": {"type": "str"},
        "port_path": {"type": "str"},
    }
    return {"type": "dict", "options": {name: options[name] for name in fields}}
