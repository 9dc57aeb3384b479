"""Make the stack importable as ``usbip`` straight from the source tree.

The same package is shipped as the collection's ``module_utils`` and, through
``pip install .``, as the ``usbip``/``usbipd`` commands; tests import it from
the tree so that they always exercise the code under review.
"""

import os
import sys

_MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins", "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)
