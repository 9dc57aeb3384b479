import os
import sys

_SYSFS_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sysfs")
if _SYSFS_TESTS not in sys.path:
    sys.path.insert(0, _SYSFS_TESTS)
