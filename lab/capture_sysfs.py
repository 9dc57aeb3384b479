"""Dump kernel interface trees to JSON so that unit-test fakes can mirror them.

Run in the guest (``python3 -m lab run``) after setting up the state to
capture; each entry records type, mode, link target and content (or the errno
a read gives, e.g. EACCES for write-only attributes, ENODEV for ``dev_desc``
with no gadget bound).

    python3 lab/capture_sysfs.py OUT.json PATH...
"""

from __future__ import annotations

import json
import os
import stat
import sys

#: Attributes whose read has side effects or is slow/huge in sysfs.
SKIP = {"descriptors", "uevent", "config", "resource", "remove", "rescan", "reset", "bConfigurationValue.lock"}
MAX_DEPTH = 8


def capture(root: str, out: dict, depth: int = 0) -> None:
    try:
        st = os.lstat(root)
    except OSError:
        return
    entry = {"mode": oct(stat.S_IMODE(st.st_mode))}
    out[root] = entry
    if stat.S_ISLNK(st.st_mode):
        entry["type"] = "link"
        entry["target"] = os.readlink(root)
        return
    if stat.S_ISDIR(st.st_mode):
        entry["type"] = "dir"
        if depth >= MAX_DEPTH:
            return
        for name in sorted(os.listdir(root)):
            if name in ("power", "subsystem", "firmware_node", "ep_00") and depth > 0:
                continue
            capture(os.path.join(root, name), out, depth + 1)
        return
    entry["type"] = "file"
    if os.path.basename(root) in SKIP:
        return
    try:
        with open(root, "rb") as f:
            data = f.read(65536)
        try:
            entry["text"] = data.decode("ascii")
        except UnicodeDecodeError:
            entry["hex"] = data.hex()
    except OSError as err:
        entry["errno"] = err.errno
        entry["error"] = os.strerror(err.errno)


def main() -> int:
    out: dict = {}
    for path in sys.argv[2:]:
        capture(path, out)
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    print("captured %d entries to %s" % (len(out), sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
