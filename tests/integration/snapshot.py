# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print kernel state so that two runs can be compared byte for byte (integration targets).

    snapshot.py [--walk DIR]... [--modules] [PATH_OR_GLOB]...

Each PATH (globs are expanded, sorted) prints one line: a symlink its target,
a directory its entries, a file its content (text with escapes when printable, else
hex),
an unreadable file its errno. ``--walk`` prints every entry below DIR the
same way, without following links; ``--modules`` the loaded kernel modules.
One process instead of a shell loop: forks are slow in an emulated guest.
"""

from __future__ import annotations

import glob
import os
import sys


def describe(path: str) -> str:
    if os.path.islink(path):
        return "L %s -> %s" % (path, os.readlink(path))
    if os.path.isdir(path):
        return "D %s: %s" % (path, " ".join(sorted(os.listdir(path))))
    if not os.path.lexists(path):
        return "- %s" % path
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        return "F %s ! %s" % (path, os.strerror(err.errno or 0))
    try:
        text = data.decode("ascii")
        if all(c.isprintable() or c in "\n\t" for c in text):
            return "F %s = %s" % (path, text.encode("unicode_escape").decode("ascii"))
    except UnicodeDecodeError:
        pass
    return "F %s = hex:%s" % (path, data.hex())


def walk(top: str):
    yield describe(top)
    for root, dirs, files in os.walk(top):
        for name in sorted(dirs + files):
            yield describe(os.path.join(root, name))
        dirs.sort()


def main(argv) -> int:
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--walk":
            top = args.pop(0)
            for line in walk(top) if os.path.isdir(top) else [describe(top)]:
                print(line)
        elif arg == "--modules":
            with open("/proc/modules") as f:
                print("modules: " + " ".join(sorted(line.split()[0] for line in f)))
        else:
            for path in sorted(glob.glob(arg)) or [arg]:
                print(describe(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
