# Synchronize a package directory with a bundle read on stdin (usbip.usbip roles; run as python3 -c).
# stdin: JSON {"relative/path.py": "content", ...}. argv: <directory> [--check]
# Writes the files whose content differs (atomically, mode 0644, directories 0755) and removes the .py files and
# directories the bundle no longer has (__pycache__ is left to Python). With --check, writes nothing.
# Prints JSON {"written": [...], "removed": [...]}.
import json
import os
import shutil
import sys

root, check = sys.argv[1], "--check" in sys.argv[2:]
bundle = json.load(sys.stdin)
written, removed = [], []
for rel in sorted(bundle):
    path = os.path.join(root, rel)
    data = bundle[rel].encode("utf-8")
    try:
        with open(path, "rb") as f:
            same = f.read() == data
    except OSError:
        same = False
    if same:
        continue
    written.append(rel)
    if check:
        continue
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
wanted_dirs = set()
for rel in bundle:
    parent = os.path.dirname(rel)
    while parent:
        wanted_dirs.add(parent)
        parent = os.path.dirname(parent)
if os.path.isdir(root):
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        reldir = os.path.relpath(dirpath, root)
        reldir = "" if reldir == "." else reldir
        for name in sorted(dirnames):
            rel = os.path.join(reldir, name)
            if name != "__pycache__" and rel not in wanted_dirs:
                removed.append(rel + "/")
                dirnames.remove(name)
                if not check:
                    shutil.rmtree(os.path.join(root, rel))
        if os.path.basename(dirpath) == "__pycache__":
            dirnames[:] = []
            continue
        for name in sorted(filenames):
            rel = os.path.join(reldir, name)
            if name.endswith(".py") and rel not in bundle:
                removed.append(rel)
                if not check:
                    os.unlink(os.path.join(root, rel))
json.dump({"written": written, "removed": removed}, sys.stdout)
