# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Short runs of the fuzzers in ``tests/fuzz`` (the long runs are documented in docs/security.md).

The repository root goes on ``sys.path`` so that the fuzzers are imported as
``tests.fuzz.*``, the name their long runs use (``python -m tests.fuzz.x``).
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
