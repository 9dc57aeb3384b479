# The collection's USB/IP stack on a target, in releases (usbip.usbip roles; run as python3 -c, prints JSON).
#
# Below the install prefix:
#   releases/<version>-<hash12>/usbip/   one directory per release, named by the collection version and the
#                                         SHA-256 of the shipped files; complete before it gets its name
#   current  -> releases/<id>            the release a wrapper runs when it starts (replaced by a rename: atomic)
#   previous -> releases/<id>            the one before (a rollback, daemons still running it)
#   usbip/                               the layout before releases (a plain copy), migrated away
# A wrapper opens the release directory that `current` names when it starts and keeps it open: a process's
# /proc/<pid>/fd tells which release it started from, whatever `current` says now.
# install, prune and remove hold an exclusive flock on PREFIX itself while they look and change: a prune run by one
# role never sees the release another role's install has just made but not switched to yet, and removes it.
#
# install PREFIX VERSION [--unit UNIT[,UNIT]]... [--check]     stdin: JSON {"relative/path.py": "content", ...}
#     The release of the bundle, made if missing (or repaired if its files differ), then `current`; for each unit,
#     the release its main process started from and whether that is another one (`stale`: restart it). A `current`
#     or `previous` that names a missing release (`dangling`) is repaired: `current` by the install itself, and
#     `previous` never names a missing release afterwards.
# prune PREFIX BIN_DIR [--wrapper NAME[,NAME]]... [--check]
#     Removes the releases that are neither current, previous nor held by a running process, and the layout before
#     releases once no process started by one of the wrappers still runs from it. While `current` names a missing
#     release, it removes nothing (an install repairs that first).
# wrappers BIN_DIR [--keep NAME[,NAME]]... [--check]
#     Removes the collection's wrappers (their marker line) whose name is not kept.
# remove PREFIX [--check]
#     Removes every release, the links, the layout before releases and PREFIX itself if nothing else is left in it.
# rmdir PATH... [--check]
#     Removes each directory that is empty, in order.
# With --check nothing is written; the answer says what would be.
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys

MARKER = b"of the usbip.usbip collection"
SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+_-")


def fail(message):
    sys.stdout.write(json.dumps({"failed": True, "msg": message}))
    sys.exit(1)


def options(args, names):
    """Positional arguments and the values of --name options (repeated, or comma-separated); --check is a flag."""
    positional, values = [], {name: [] for name in names}
    check = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--check":
            check = True
        elif arg[2:] in values and arg.startswith("--") and index + 1 < len(args):
            index += 1
            values[arg[2:]].extend(value for value in args[index].split(",") if value)
        elif arg.startswith("--"):
            fail("unknown option %s" % arg)
        else:
            positional.append(arg)
        index += 1
    return positional, values, check


def release_dirs(prefix):
    """{(st_dev, st_ino): name} of the complete releases."""
    root = os.path.join(prefix, "releases")
    found = {}
    try:
        names = os.listdir(root)
    except OSError:
        return found
    for name in names:
        if name.startswith("."):
            continue
        try:
            st = os.stat(os.path.join(root, name))
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            found[(st.st_dev, st.st_ino)] = name
    return found


def held_by(pid, releases):
    """Names of the releases process ``pid`` holds open (none for a process gone or started before releases)."""
    held = set()
    fd_dir = "/proc/%s/fd" % pid
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return held
    for fd in fds:
        try:
            st = os.stat(os.path.join(fd_dir, fd))
        except OSError:
            continue
        name = releases.get((st.st_dev, st.st_ino))
        if name is not None and stat.S_ISDIR(st.st_mode):
            held.add(name)
    return held


def processes():
    return [name for name in os.listdir("/proc") if name.isdigit()]


def cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return [arg.decode("utf-8", "replace") for arg in f.read().split(b"\0") if arg]
    except OSError:
        return []


def link_target(path):
    """The release a link names (its last path component), or None."""
    try:
        return os.path.basename(os.readlink(path).rstrip("/")) if os.path.islink(path) else None
    except OSError:
        return None


def link_dangles(path):
    """Whether ``path`` is a link whose target is not a directory (a release removed or not made yet)."""
    return os.path.islink(path) and not os.path.isdir(path)


def lock(prefix):
    """An exclusive flock on the directory ``prefix`` (None when it does not exist): released when the script ends.

    Only the role's scripts take it; a wrapper resolving `current` never waits.
    """
    try:
        fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def exchange(old, new):
    """Swap the directories ``old`` and ``new`` in one step (renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(old), at_fdcwd, os.fsencode(new), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), old)


def main_pid(unit):
    proc = subprocess.run(["systemctl", "show", "--property", "MainPID", "--value", unit],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
    try:
        return int(proc.stdout.strip() or "0") if proc.returncode == 0 else 0
    except ValueError:
        return 0


def write_tree(root, bundle):
    """The bundle's files below ``root``, readable by every account (usbipd's network process imports as one)."""
    for rel in sorted(bundle):
        path = os.path.join(root, rel)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        with open(path, "wb") as f:
            f.write(bundle[rel].encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(path, 0o644)
    for dirpath, _dirnames, _filenames in os.walk(root):
        os.chmod(dirpath, 0o755)


def tree_differs(root, bundle):
    """Whether the release directory ``root`` holds other .py files than the bundle (__pycache__ aside)."""
    for rel, content in bundle.items():
        try:
            with open(os.path.join(root, rel), "rb") as f:
                if f.read() != content.encode("utf-8"):
                    return True
        except OSError:
            return True
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if name != "__pycache__"]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if name.endswith(".py") and rel not in bundle:
                return True
    return False


def relink(prefix, name, target):
    """Point ``prefix/name`` at ``target`` by renaming a new link over it (a reader sees the old or the new one)."""
    temporary = os.path.join(prefix, ".%s.%d" % (name, os.getpid()))
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.rename(temporary, os.path.join(prefix, name))


def install(args):
    (prefix, version), units, check = unpack(args, 2, ["unit"])
    units = units["unit"]
    try:
        bundle = json.load(sys.stdin)
    except ValueError as error:
        fail("the bundle on stdin is not JSON: %s" % error)
    if not isinstance(bundle, dict) or not all(isinstance(content, str) for content in bundle.values()):
        fail("the bundle on stdin is not a JSON object of relative .py paths and their contents")
    for rel in bundle:
        if rel.startswith("/") or ".." in rel.split("/") or not rel.endswith(".py"):
            fail("not a relative .py path of the stack: %r" % rel)
    digest = hashlib.sha256()
    for rel in sorted(bundle):
        digest.update(rel.encode("utf-8") + b"\0" + bundle[rel].encode("utf-8") + b"\0")
    release = "%s-%s" % ("".join(c if c in SAFE else "_" for c in version), digest.hexdigest()[:12])
    releases = os.path.join(prefix, "releases")
    target = os.path.join(releases, release)
    package = os.path.join(target, "usbip")
    current_link, previous_link = os.path.join(prefix, "current"), os.path.join(prefix, "previous")
    if os.path.lexists(current_link) and not os.path.islink(current_link):
        fail("%s/current is not a symbolic link: move it away" % prefix)
    if not check:
        for directory in (prefix, releases):
            if not os.path.isdir(directory):
                os.makedirs(directory)
                os.chmod(directory, 0o755)
    lock(prefix)
    created = not os.path.isdir(target)
    repaired = not created and tree_differs(package, bundle)
    current, previous = link_target(current_link), link_target(previous_link)
    # A link naming a missing release: an install or a repair cut short, a release removed by hand. A dangling
    # `current` is pointed at this release (made below if missing) and never becomes `previous`; a dangling
    # `previous` goes.
    dangling = [name for name, path in (("current", current_link), ("previous", previous_link))
                if link_dangles(path)]
    switched = current != release
    if switched and current is not None and "current" not in dangling:
        previous = current
    elif "previous" in dangling and previous != release:
        previous = None
    if not check:
        if created or repaired:
            # The release gets its name only once complete: a wrapper never starts from half a release.
            staging = os.path.join(releases, ".staging-%s.%d" % (release, os.getpid()))
            if os.path.lexists(staging):
                shutil.rmtree(staging)
            os.mkdir(staging)
            os.chmod(staging, 0o755)
            write_tree(os.path.join(staging, "usbip"), bundle)
            if repaired and exchange(staging, target):
                # The rebuilt copy takes the name in one step; the name never names nothing.
                shutil.rmtree(staging, ignore_errors=True)
            elif repaired:
                stale = os.path.join(releases, ".stale-%s.%d" % (release, os.getpid()))
                os.rename(target, stale)
                os.rename(staging, target)
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.rename(staging, target)
        if switched:
            if previous is not None and previous == current:
                relink(prefix, "previous", os.path.join("releases", current))
            relink(prefix, "current", os.path.join("releases", release))
        if previous is None and os.path.islink(previous_link):
            os.unlink(previous_link)
    known = release_dirs(prefix)
    running = {}
    for unit in units:
        pid = main_pid(unit)
        held = sorted(held_by(pid, known)) if pid else []
        running[unit] = {"pid": pid, "release": held[0] if held else None,
                         "stale": bool(pid) and release not in held}
    legacy = os.path.join(prefix, "usbip")
    return {"changed": created or repaired or switched or bool(dangling), "id": release, "version": version,
            "path": target, "created": created, "repaired": repaired, "switched": switched, "previous": previous,
            "dangling": dangling, "legacy": os.path.isdir(legacy) and not os.path.islink(legacy),
            "running": running}


def prune(args):
    (prefix, bin_dir), wrappers, check = unpack(args, 2, ["wrapper"])
    wrapper_paths = {os.path.join(bin_dir, name) for name in wrappers["wrapper"]}
    releases = os.path.join(prefix, "releases")
    lock(prefix)
    known = release_dirs(prefix)
    links = {name: link_target(os.path.join(prefix, name)) for name in ("current", "previous")}
    # What each link resolves to, whatever its spelling (relative, absolute, a trailing slash or a path below the
    # release): a release a link leads into is kept even when its name is not the link's last component.
    resolved = {name: os.path.realpath(os.path.join(prefix, name)) for name in links if links[name] is not None}
    in_use, legacy_users = set(), []
    for pid in processes():
        held = held_by(pid, known)
        in_use |= held
        # A process started by a wrapper that holds no release runs the layout before releases.
        if not held and wrapper_paths.intersection(cmdline(pid)[1:3]):
            legacy_users.append(int(pid))
    removed, kept = [], {}
    # `current` naming a missing release (an install cut short): nothing goes until an install has repaired it.
    broken = link_dangles(os.path.join(prefix, "current"))
    for name in sorted(set(known.values())):
        path = os.path.realpath(os.path.join(releases, name))
        reasons = [link for link, target in sorted(links.items())
                   if target == name or link in resolved
                   and (resolved[link] == path or resolved[link].startswith(path + os.sep))]
        if reasons or name in in_use or broken:
            kept[name] = " and ".join(reasons or ["in use" if name in in_use else "current is missing"])
            continue
        removed.append("releases/" + name)
        if not check:
            shutil.rmtree(os.path.join(releases, name))
    if os.path.isdir(releases) and not broken:
        for name in sorted(os.listdir(releases)):
            if name.startswith((".staging-", ".stale-")):
                removed.append("releases/" + name)
                if not check:
                    shutil.rmtree(os.path.join(releases, name), ignore_errors=True)
    legacy = os.path.join(prefix, "usbip")
    if os.path.isdir(legacy) and not os.path.islink(legacy) and links["current"] is not None:
        if legacy_users:
            kept["usbip"] = "in use by pid %s" % ", ".join(str(pid) for pid in sorted(legacy_users))
        elif broken:
            kept["usbip"] = "current is missing"
        else:
            removed.append("usbip")
            if not check:
                shutil.rmtree(legacy)
    return {"changed": bool(removed), "removed": removed, "kept": kept}


def wrappers(args):
    (bin_dir,), keep, check = unpack(args, 1, ["keep"])
    removed = []
    try:
        names = sorted(os.listdir(bin_dir))
    except OSError:
        names = []
    for name in names:
        path = os.path.join(bin_dir, name)
        if name in keep["keep"] or os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                head = f.read(1024)
        except OSError:
            continue
        if MARKER in head:
            removed.append(path)
            if not check:
                os.unlink(path)
    return {"changed": bool(removed), "removed": removed}


def remove(args):
    (prefix,), _unused, check = unpack(args, 1, [])
    lock(prefix)
    removed = []
    for name in ("current", "previous"):
        path = os.path.join(prefix, name)
        if os.path.islink(path):
            removed.append(name)
            if not check:
                os.unlink(path)
    for name in ("releases", "usbip"):
        path = os.path.join(prefix, name)
        if os.path.isdir(path) and not os.path.islink(path):
            removed.append(name + "/")
            if not check:
                shutil.rmtree(path)
    if os.path.isdir(prefix):
        # Temporary links of an interrupted switch; anything else is not the collection's and stays.
        leftovers = [name for name in os.listdir(prefix) if name.startswith((".current.", ".previous."))]
        for name in leftovers:
            removed.append(name)
            if not check:
                os.unlink(os.path.join(prefix, name))
        others = set(os.listdir(prefix)) - {"current", "previous", "releases", "usbip"} - set(leftovers)
        if not others:
            removed.append(prefix)
            if not check:
                os.rmdir(prefix)
    return {"changed": bool(removed), "removed": removed}


def rmdir(args):
    paths, _unused, check = options(args, [])
    removed = []
    for path in paths:
        try:
            empty = os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)
        except OSError:
            empty = False
        if empty:
            removed.append(path)
            if not check:
                os.rmdir(path)
    return {"changed": bool(removed), "removed": removed}


def unpack(args, count, names):
    positional, values, check = options(args, names)
    if len(positional) != count:
        fail("expected %d arguments, got %d" % (count, len(positional)))
    for path in positional[:1]:
        if not os.path.isabs(path):
            fail("not an absolute path: %s" % path)
    return positional, values, check


COMMANDS = {"install": install, "prune": prune, "wrappers": wrappers, "remove": remove, "rmdir": rmdir}

if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    fail("usage: stack.py {%s} ..." % "|".join(sorted(COMMANDS)))
try:
    sys.stdout.write(json.dumps(COMMANDS[sys.argv[1]](sys.argv[2:])))
except OSError as error:
    fail("%s: %s" % (error.filename or sys.argv[1], error.strerror))
