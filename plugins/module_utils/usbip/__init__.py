# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A pure-Python USB/IP userspace.

One package serves the Ansible modules (as ``module_utils``), the ``usbipd``
daemon and the ``usbip`` command line.  It therefore imports nothing from
Ansible, uses relative imports only and keeps to Python 3.9 syntax.

Layout mirrors the architecture:

``protocol``  sans-I/O codec of the wire format (bytes in, typed messages out)
``sysfs``     one driver per kernel interface (usbip-host, vhci-hcd, usbip-vudc,
              configfs gadgets) plus validation of every name that reaches sysfs
``net``       the thin I/O layers: client and asyncio server
``cli``       the ``usbip`` and ``usbipd`` command lines
"""

__version__ = "0.1.0"
