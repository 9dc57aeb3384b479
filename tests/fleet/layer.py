"""List what a fleet guest wrote: the upper layers of its overlays, as JSON on stdout.

    python3 tests/fleet/layer.py ROOT [--skip PATH]...

Runs inside a fleet guest (the guest sees this checkout through the host's root). lab/init.sh
mounts the host's root read-only and overlays /etc, /var, /root, /usr/local and /tmp, with their
upper layers on the guest's disk (ROOT/<etc|var|root|usr_local|tmp>/u once that disk is mounted at
ROOT). Every entry of those upper layers, /tmp's aside, is one key, its path as the guest sees it:

    "d"          a directory (one the guest made, or one of the host's that an entry below copied up)
    "l TARGET"   a symbolic link
    "w"          a whiteout: an entry of the host's root that the guest deleted
    "f SHA256"   a regular file and its content
    "o"          anything else

``--skip PATH`` leaves PATH and what is below it out (logs, caches: what churns by itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys

LAYERS = {"etc": "/etc", "var": "/var", "root": "/root", "usr_local": "/usr/local"}


def describe(path: str) -> str:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        return "d"
    if stat.S_ISLNK(st.st_mode):
        return "l " + os.readlink(path)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return "w"
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                digest.update(block)
        return "f " + digest.hexdigest()
    return "o"


def listing(root: str, skip: list) -> dict:
    entries = {}
    for key, base in LAYERS.items():
        upper = os.path.join(root, key, "u")
        for dirpath, dirnames, filenames in os.walk(upper):
            relative = os.path.relpath(dirpath, upper)
            guest_dir = base if relative == "." else os.path.join(base, relative)
            kept = []
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(guest_dir, name)
                if any(path == s or path.startswith(s.rstrip("/") + "/") for s in skip):
                    continue
                entries[path] = describe(os.path.join(dirpath, name))
                if name in dirnames and entries[path] == "d":
                    kept.append(name)
            dirnames[:] = kept
    return entries


def main(argv: list) -> int:
    root, skip = argv[0], [argv[i + 1] for i, arg in enumerate(argv) if arg == "--skip" and i + 1 < len(argv)]
    json.dump(listing(root, skip), sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
