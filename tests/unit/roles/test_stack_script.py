# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/usbip_common/files/stack.py: releases, the current/previous switch, pruning, migration, wrappers, removal.

Run as the roles run it (``python3 -c <script> install PREFIX VERSION --unit ...``, the bundle on stdin) in a
temporary prefix. The daemons are the real wrapper template rendered into a temporary bin directory, started on
a release whose ``cli/usbipd.py`` waits on its stdin: they hold their release open exactly as a real one does, and
a fake ``systemctl`` reports their pid as the unit's MainPID.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import jinja2
import pytest
from role_scripts import REPO, run_script, script_text, write_tool

SCRIPT = script_text("roles/usbip_common/files/stack.py")
WRAPPER_TEMPLATE = (REPO / "roles/usbip_common/templates/usbip-wrapper.py.j2").read_text()
#: The wrapper the roles installed before releases: the prefix itself on sys.path, nothing held open.
OLD_WRAPPER_TEMPLATE = '''#!/usr/bin/python3
# {{ ansible_managed }}
# {{ item.name }} of the usbip.usbip collection, run from the copy in {{ usbip_common__prefix }}.
import sys

sys.path.insert(0, "{{ usbip_common__prefix }}")

from usbip.cli.{{ item.entry }} import main  # noqa: E402

sys.exit(main())
'''
VERSION = "1.2.3"
UNITS = ["usbipd.service", "usbip-attachd.service"]
WRAPPER_NAMES = "usbipd,usbip-attachd,usbip"

#: A daemon's entry point: says it runs, then waits until the test closes its stdin.
DAEMON = '''import sys


def main():
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    sys.stdin.read()
    return 0
'''
#: ``systemctl show --property MainPID --value UNIT``: the pid in $FAKE_PIDS/UNIT, 0 without one.
SYSTEMCTL = """#!/bin/sh
if [ "$#" -ne 5 ] || [ "$1 $2 $3 $4" != "show --property MainPID --value" ]; then
    echo "fake systemctl: unexpected $*" >&2
    exit 1
fi
cat "$FAKE_PIDS/$5" 2>/dev/null || echo 0
"""


def bundle(revision: int = 1) -> Dict[str, str]:
    """The shipped files of one revision of the stack (only ``version.py`` differs between revisions)."""
    return {"__init__.py": "", "cli/__init__.py": "", "cli/usbipd.py": DAEMON, "cli/attachd.py": DAEMON,
            "version.py": "REVISION = %d\n" % revision}


class Target:
    """A target's prefix and bin directory, in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = root / "lib" / "usbip-usbip"
        self.bin_dir = root / "sbin"
        self.bin_dir.mkdir()
        self.tools = root / "tools"
        write_tool(self.tools, "systemctl", SYSTEMCTL)
        self.pids = root / "pids"
        self.pids.mkdir()
        self.daemons: List[subprocess.Popen] = []

    # -- the script -------------------------------------------------------------------------------
    def stack(self, *args: str, stdin: str = "", rc: int = 0, text: str = SCRIPT, env=None) -> dict:
        env = dict(env or {}, FAKE_PIDS=str(self.pids))
        code, answer = run_script(text, args, stdin=stdin, path="%s:/usr/bin:/bin" % self.tools, env=env)
        assert code == rc, answer
        return answer

    def install(self, files: Dict[str, str], *extra: str, version: str = VERSION, **kw) -> dict:
        return self.stack("install", str(self.prefix), version, "--unit", ",".join(UNITS), *extra,
                          stdin=json.dumps(files), **kw)

    def prune(self, *extra: str) -> dict:
        return self.stack("prune", str(self.prefix), str(self.bin_dir), "--wrapper", WRAPPER_NAMES, *extra)

    # -- what is on disk ---------------------------------------------------------------------------
    def releases(self) -> List[str]:
        root = self.prefix / "releases"
        return sorted(os.listdir(root)) if root.is_dir() else []

    def link(self, name: str):
        path = self.prefix / name
        return os.readlink(path) if path.is_symlink() else None

    def snapshot(self) -> Dict[str, tuple]:
        """Every path below the prefix with its inode, mtime and link target: equal snapshots, nothing written."""
        found = {}
        for dirpath, dirnames, filenames in os.walk(self.prefix):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                found[os.path.relpath(path, self.prefix)] = (
                    st.st_ino, st.st_mtime_ns, st.st_mode, os.readlink(path) if os.path.islink(path) else None)
        return found

    # -- wrappers and daemons ----------------------------------------------------------------------
    def wrapper(self, name: str, entry: str, template: str = WRAPPER_TEMPLATE) -> Path:
        """The role's template task: the wrapper rendered into the bin directory."""
        path = self.bin_dir / name
        path.write_text(jinja2.Template(template, keep_trailing_newline=True).render(
            ansible_managed="Ansible managed: do not edit", usbip_common__prefix=str(self.prefix),
            item={"name": name, "entry": entry}))
        path.chmod(0o755)
        return path

    def start(self, name: str, unit: str = "") -> subprocess.Popen:
        """Run the wrapper ``name`` as its unit does (the interpreter, then the wrapper's path) until it is ready."""
        proc = subprocess.Popen([sys.executable, str(self.bin_dir / name)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, universal_newlines=True)
        self.daemons.append(proc)
        assert proc.stdout.readline() == "ready\n", "the wrapper did not start its entry point"
        if unit:
            (self.pids / unit).write_text("%d\n" % proc.pid)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        proc.stdin.close()
        proc.wait(timeout=10)
        for unit in os.listdir(self.pids):
            if (self.pids / unit).read_text().strip() == str(proc.pid):
                (self.pids / unit).unlink()

    def close(self) -> None:
        for proc in self.daemons:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None and not stream.closed:
                    stream.close()


@pytest.fixture
def target(tmp_path):
    t = Target(tmp_path)
    yield t
    t.close()


def release_id(answer: dict) -> str:
    assert re.fullmatch(re.escape(VERSION) + r"-[0-9a-f]{12}", answer["id"]), answer["id"]
    return answer["id"]


# -- install ----------------------------------------------------------------------------------------
def test_a_first_install_makes_one_release_and_current(target):
    answer = target.install(bundle())
    first = release_id(answer)
    assert answer["changed"] is True and answer["created"] is True and answer["switched"] is True
    assert answer["repaired"] is False and answer["previous"] is None and answer["legacy"] is False
    assert answer["version"] == VERSION and answer["path"] == str(target.prefix / "releases" / first)
    assert answer["running"] == {unit: {"pid": 0, "release": None, "stale": False} for unit in UNITS}
    assert target.releases() == [first]
    assert target.link("current") == "releases/" + first and target.link("previous") is None
    assert sorted(os.listdir(target.prefix)) == ["current", "releases"]
    package = target.prefix / "releases" / first / "usbip"
    for rel, content in bundle().items():
        assert (package / rel).read_text() == content
        assert (package / rel).stat().st_mode & 0o777 == 0o644, rel
    for directory in (target.prefix, target.prefix / "releases", package.parent, package, package / "cli"):
        assert directory.stat().st_mode & 0o777 == 0o755, directory


def test_the_release_id_is_the_version_and_the_content(target):
    """Same files, same id (whatever the order they come in); another file or version, another id."""
    first = target.install(bundle(), "--check")["id"]
    reordered = dict(reversed(list(bundle().items())))
    assert target.install(reordered, "--check")["id"] == first
    assert target.install(bundle(2), "--check")["id"] != first
    assert target.install(dict(bundle(), **{"cli/extra.py": ""}), "--check")["id"] != first
    other = target.install(bundle(), "--check", version="1.2.4")["id"]
    assert other.startswith("1.2.4-") and other[-12:] == first[-12:]
    # A version is a file name part: anything else than letters, digits and .+_- becomes _.
    odd = target.install(bundle(), "--check", version="1.0/../x y")["id"]
    assert odd == "1.0_.._x_y-" + first[-12:]


def test_the_same_content_again_changes_nothing(target):
    first = target.install(bundle())["id"]
    before = target.snapshot()
    again = target.install(bundle())
    assert again["changed"] is False and again["id"] == first
    assert (again["created"], again["repaired"], again["switched"], again["previous"]) == (False, False, False, None)
    assert target.snapshot() == before, "an install of the current release wrote something"


def test_a_changed_file_makes_a_new_release_and_switches_current(target):
    first = target.install(bundle(1))["id"]
    second_answer = target.install(bundle(2))
    second = release_id(second_answer)
    assert second != first
    assert second_answer["changed"] is True and second_answer["created"] is True and second_answer["switched"]
    assert second_answer["previous"] == first
    assert target.releases() == sorted([first, second])
    assert target.link("current") == "releases/" + second and target.link("previous") == "releases/" + first
    old = target.prefix / "releases" / first / "usbip" / "version.py"
    assert old.read_text() == "REVISION = 1\n", "the previous release was touched"
    assert not [name for name in os.listdir(target.prefix) if name.startswith(".")], "a temporary link is left"

    # Installing the old content again is the rollback: a switch back to the release that is there.
    before = (target.prefix / "releases" / first).stat().st_ino
    back = target.install(bundle(1))
    assert back["id"] == first and back["changed"] is True and back["switched"] is True
    assert back["created"] is False and back["repaired"] is False and back["previous"] == second
    assert (target.prefix / "releases" / first).stat().st_ino == before, "the release was rebuilt, not reused"
    assert target.releases() == sorted([first, second])
    assert target.link("current") == "releases/" + first and target.link("previous") == "releases/" + second
    assert target.install(bundle(1))["changed"] is False


#: Runs stack.py with an audit hook that logs the renames, links, removals and file writes it makes.
AUDITED = '''import json, os, sys
LOG = open(os.environ["AUDIT_LOG"], "a")
WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def hook(event, args):
    if event == "open":
        if args[2] & WRITES and isinstance(args[0], str):
            LOG.write(json.dumps(["write", args[0]]) + "\\n")
    elif event in ("os.rename", "os.remove", "os.rmdir", "os.symlink", "shutil.rmtree"):
        LOG.write(json.dumps([event] + [str(arg) for arg in args[:2]]) + "\\n")
    LOG.flush()


sys.addaudithook(hook)
with open(os.environ["STACK_SCRIPT"]) as f:
    text = f.read()
exec(compile(text, "stack.py", "exec"), {"__name__": "__main__"})
'''


def test_current_and_previous_are_only_ever_replaced_by_a_rename(target, tmp_path):
    """A wrapper resolving ``current`` at any moment finds a complete release: the links are never missing."""
    first = target.install(bundle(1))["id"]
    audit = tmp_path / "audit.log"
    env = {"AUDIT_LOG": str(audit), "STACK_SCRIPT": str(REPO / "roles/usbip_common/files/stack.py")}
    second = target.install(bundle(2), text=AUDITED, env=env)["id"]
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    prefix, releases = str(target.prefix), str(target.prefix / "releases")

    touching = {name: [e for e in events if os.path.join(prefix, name) in e[1:]] for name in ("current", "previous")}
    for name, target_release in (("previous", first), ("current", second)):
        (event, temporary, final), = touching[name]
        assert event == "os.rename" and final == os.path.join(prefix, name)
        assert os.path.dirname(temporary) == prefix and os.path.basename(temporary).startswith("." + name + ".")
        assert ["os.symlink", "releases/" + target_release, temporary] in events
    assert events.index(touching["previous"][0]) < events.index(touching["current"][0]), \
        "current switched before previous kept the release it named"

    # The release gets its name by a rename once every file is written under a temporary one.
    named = [e for e in events if e[0] == "os.rename" and e[2] == os.path.join(releases, second)]
    assert len(named) == 1
    staging = named[0][1]
    assert os.path.dirname(staging) == releases and os.path.basename(staging).startswith(".staging-")
    written = [e[1] for e in events if e[0] == "write" and e[1].startswith(prefix + "/")]
    assert len(written) == len(bundle(2))
    assert all(path.startswith(staging + "/") for path in written), written
    assert events.index(named[0]) > max(i for i, e in enumerate(events) if e[0] == "write" and e[1] in written)
    assert not [e for e in events if e[0] in ("os.remove", "os.rmdir", "shutil.rmtree")]


def test_check_mode_writes_nothing_and_says_what_would_be(target):
    answer = target.install(bundle(), "--check")
    assert answer["changed"] is True and answer["created"] is True and answer["switched"] is True
    assert not target.prefix.exists()
    first = target.install(bundle())["id"]
    before = target.snapshot()
    answer = target.install(bundle(2), "--check")
    assert answer["changed"] is True and answer["created"] is True and answer["previous"] == first
    assert target.snapshot() == before


# -- repair -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("tamper", ["edited", "deleted", "added"])
def test_a_tampered_release_is_rebuilt(target, tamper):
    first = target.install(bundle())["id"]
    release = target.prefix / "releases" / first
    package = release / "usbip"
    if tamper == "edited":
        (package / "version.py").write_text("REVISION = 666\n")
    elif tamper == "deleted":
        (package / "cli" / "usbipd.py").unlink()
    else:
        (package / "cli" / "backdoor.py").write_text("import os\n")
    inode = release.stat().st_ino

    answer = target.install(bundle())
    assert answer["id"] == first and answer["changed"] is True and answer["repaired"] is True
    assert answer["created"] is False and answer["switched"] is False
    assert release.stat().st_ino != inode, "the release was patched in place, not rebuilt and renamed"
    files = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert files == sorted(bundle())
    assert all((package / rel).read_text() == content for rel, content in bundle().items())
    assert target.releases() == [first], "a staging or stale copy is left"
    assert target.link("current") == "releases/" + first
    assert target.install(bundle())["changed"] is False


def test_compiled_files_and_other_files_in_a_release_are_not_a_change(target):
    """A daemon importing its release writes __pycache__ there: that must not rebuild the release at each run."""
    first = target.install(bundle())["id"]
    package = target.prefix / "releases" / first / "usbip"
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "version.cpython-311.pyc").write_bytes(b"\0" * 16)
    (package / "__pycache__" / "odd.py").write_text("")
    (package / "README.txt").write_text("notes\n")
    assert target.install(bundle())["changed"] is False


# -- units, in-use releases and pruning ------------------------------------------------------------
def test_each_unit_reports_the_release_its_main_process_started_from(target):
    first = target.install(bundle(1))["id"]
    target.wrapper("usbipd", "usbipd")
    target.wrapper("usbip-attachd", "attachd")
    server = target.start("usbipd", "usbipd.service")
    target.start("usbip-attachd", "usbip-attachd.service")

    same = target.install(bundle(1))
    assert same["changed"] is False
    assert same["running"]["usbipd.service"] == {"pid": server.pid, "release": first, "stale": False}
    assert same["running"]["usbip-attachd.service"]["release"] == first

    second = target.install(bundle(2))["id"]
    again = target.install(bundle(2))
    assert again["running"]["usbipd.service"] == {"pid": server.pid, "release": first, "stale": True}

    target.stop(server)
    restarted = target.start("usbipd", "usbipd.service")
    assert target.install(bundle(2))["running"]["usbipd.service"] == {
        "pid": restarted.pid, "release": second, "stale": False}


def test_a_daemon_on_a_rebuilt_release_is_stale(target):
    """A rebuilt release is another directory: the daemon still runs the files it started with."""
    first = target.install(bundle())["id"]
    target.wrapper("usbipd", "usbipd")
    server = target.start("usbipd", "usbipd.service")
    (target.prefix / "releases" / first / "usbip" / "version.py").write_text("REVISION = 666\n")
    answer = target.install(bundle())
    assert answer["repaired"] is True
    assert answer["running"]["usbipd.service"] == {"pid": server.pid, "release": None, "stale": True}


def test_prune_keeps_current_previous_and_releases_in_use(target):
    held = target.install(bundle(1))["id"]
    target.wrapper("usbipd", "usbipd")
    daemon = target.start("usbipd", "usbipd.service")  # holds the first release open
    unused = target.install(bundle(2))["id"]
    previous = target.install(bundle(3))["id"]
    current = target.install(bundle(4))["id"]
    (target.prefix / "releases" / ".staging-x.1").mkdir()  # left by an interrupted install
    (target.prefix / "releases" / ".stale-y.2").mkdir()
    assert target.releases() == sorted([held, unused, previous, current, ".staging-x.1", ".stale-y.2"])

    before = target.snapshot()
    checked = target.prune("--check")
    assert checked["changed"] is True
    assert checked["removed"] == ["releases/" + unused, "releases/.staging-x.1", "releases/.stale-y.2"]
    assert checked["kept"] == {held: "in use", previous: "previous", current: "current"}
    assert target.snapshot() == before

    assert target.prune() == checked
    assert target.releases() == sorted([held, previous, current])
    assert target.link("current") == "releases/" + current and target.link("previous") == "releases/" + previous
    assert target.prune() == {"changed": False, "removed": [], "kept": checked["kept"]}

    target.stop(daemon)
    assert target.prune()["removed"] == ["releases/" + held]
    assert target.releases() == sorted([previous, current])


def test_prune_keeps_a_release_that_is_both_current_and_previous(target):
    only = target.install(bundle(1))["id"]
    other = target.install(bundle(2))["id"]
    target.install(bundle(1))
    target.install(bundle(2))
    target.install(bundle(2))
    assert target.prune() == {"changed": False, "removed": [], "kept": {only: "previous", other: "current"}}


# -- links that name a missing release -------------------------------------------------------------
def test_an_interrupted_repair_is_finished_by_the_next_install(target):
    """A repair cut short between its two renames leaves `current` naming nothing: the next install rebuilds it."""
    first = target.install(bundle())["id"]
    releases = target.prefix / "releases"
    (releases / first).rename(releases / (".stale-%s.77" % first))
    (releases / (".staging-%s.77" % first) / "usbip").mkdir(parents=True)  # half written
    assert not (target.prefix / "current").exists()

    answer = target.install(bundle())
    assert answer["dangling"] == ["current"] and answer["changed"] is True
    assert answer["created"] is True and answer["switched"] is False
    assert target.link("current") == "releases/" + first
    package = releases / first / "usbip"
    assert all((package / rel).read_text() == content for rel, content in bundle().items())
    assert target.prune()["removed"] == ["releases/.staging-%s.77" % first, "releases/.stale-%s.77" % first]
    assert target.install(bundle()) == dict(answer, changed=False, created=False, dangling=[])


def test_a_dangling_current_never_becomes_previous(target):
    first = target.install(bundle(1))["id"]
    second = target.install(bundle(2))["id"]
    (target.prefix / "releases" / second).rename(target.root / "gone")  # removed behind the role's back
    answer = target.install(bundle(3))
    third = answer["id"]
    assert answer["dangling"] == ["current"] and answer["switched"] is True
    assert answer["previous"] == first
    assert target.link("current") == "releases/" + third and target.link("previous") == "releases/" + first
    assert (target.prefix / "previous").is_dir()


def test_a_dangling_previous_goes(target):
    first = target.install(bundle(1))["id"]
    second = target.install(bundle(2))["id"]
    (target.prefix / "releases" / first).rename(target.root / "gone")
    before = target.snapshot()
    checked = target.install(bundle(2), "--check")
    assert checked["changed"] is True and checked["dangling"] == ["previous"] and checked["previous"] is None
    assert target.snapshot() == before
    answer = target.install(bundle(2))
    assert answer["id"] == second and answer["changed"] is True and answer["previous"] is None
    assert target.link("previous") is None and target.link("current") == "releases/" + second
    assert target.install(bundle(2))["changed"] is False


def test_both_links_dangling_leave_current_on_the_new_release_and_no_previous(target):
    first = target.install(bundle(1))["id"]
    second = target.install(bundle(2))["id"]
    for name in (first, second):
        (target.prefix / "releases" / name).rename(target.root / name)
    answer = target.install(bundle(3))
    assert answer["dangling"] == ["current", "previous"] and answer["previous"] is None
    assert target.link("current") == "releases/" + answer["id"] and target.link("previous") is None


def test_prune_removes_nothing_while_current_names_a_missing_release(target):
    legacy = target.prefix / "usbip"
    unused = target.install(bundle(1))["id"]
    previous = target.install(bundle(2))["id"]
    current = target.install(bundle(3))["id"]
    legacy.mkdir()  # the copy from before releases: the only stack left while current names nothing
    (legacy / "version.py").write_text("REVISION = 0\n")
    (target.prefix / "releases" / current).rename(target.root / "gone")
    (target.prefix / "releases" / ".staging-x.1").mkdir()  # what an install cut short may have left to finish
    before = target.snapshot()
    answer = target.prune()
    assert answer == {"changed": False, "removed": [],
                      "kept": {unused: "current is missing", previous: "previous", "usbip": "current is missing"}}
    assert target.snapshot() == before

    target.install(bundle(3))
    assert target.prune()["removed"] == ["releases/" + unused, "releases/.staging-x.1", "usbip"]


@pytest.mark.parametrize("spelling", ["dot", "absolute-through-a-link"])
def test_prune_keeps_what_a_link_leads_to_whatever_its_spelling(target, spelling):
    pinned = target.install(bundle(1))["id"]
    previous = target.install(bundle(2))["id"]
    unnamed = target.install(bundle(3))["id"]
    current = target.prefix / "current"
    current.unlink()  # an operator pins the first release by hand
    if spelling == "dot":
        os.symlink("releases/%s/." % pinned, current)
    else:
        os.symlink(target.prefix / "releases" / pinned, target.root / "pinned")
        os.symlink(target.root / "pinned", current)
    answer = target.prune()
    assert answer == {"changed": True, "removed": ["releases/" + unnamed],
                      "kept": {pinned: "current", previous: "previous"}}
    assert (target.prefix / "releases" / pinned / "usbip" / "version.py").is_file()


def test_install_and_prune_wait_for_each_other(target):
    """A prune never runs between an install's new release and its switch of `current`: both hold the prefix."""
    target.install(bundle(1))
    fd = os.open(target.prefix, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        env = {"LANG": "C.UTF-8", "PATH": "%s:/usr/bin:/bin" % target.tools, "FAKE_PIDS": str(target.pids)}
        waiting = [subprocess.Popen([sys.executable, "-c", SCRIPT] + args, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, universal_newlines=True, env=env)
                   for args in (["prune", str(target.prefix), str(target.bin_dir)],
                                ["install", str(target.prefix), VERSION])]
        waiting[1].stdin.write(json.dumps(bundle(2)))
        waiting[1].stdin.close()
        time.sleep(0.5)
        assert [proc.poll() for proc in waiting] == [None, None], "a script went on while another held the prefix"
        assert len(target.releases()) == 1
    finally:
        os.close(fd)
    assert [proc.wait(timeout=30) for proc in waiting] == [0, 0]
    assert len(target.releases()) == 2


def test_a_repair_swaps_the_rebuilt_release_in_without_a_moment_of_absence(target, tmp_path):
    first = target.install(bundle())["id"]
    release = target.prefix / "releases" / first
    (release / "usbip" / "version.py").write_text("REVISION = 666\n")
    audit = tmp_path / "audit.log"
    env = {"AUDIT_LOG": str(audit), "STACK_SCRIPT": str(REPO / "roles/usbip_common/files/stack.py")}
    assert target.install(bundle(), text=AUDITED, env=env)["repaired"] is True
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert not [e for e in events if e[0] == "os.rename" and e[1] == str(release)], \
        "the release was renamed away before its rebuilt copy took the name"
    assert (release / "usbip" / "version.py").read_text() == "REVISION = 1\n"
    assert target.releases() == [first]


# -- migration from the layout before releases ----------------------------------------------------
def test_the_old_layout_is_migrated_and_removed_once_nothing_runs_it(target):
    legacy = target.prefix / "usbip"
    for rel, content in bundle(0).items():
        (legacy / rel).parent.mkdir(parents=True, exist_ok=True)
        (legacy / rel).write_text(content)
    target.wrapper("usbipd", "usbipd", OLD_WRAPPER_TEMPLATE)
    old_daemon = target.start("usbipd", "usbipd.service")

    # No release yet: the old copy is all there is, prune leaves it.
    assert target.prune() == {"changed": False, "removed": [], "kept": {}}
    assert legacy.is_dir()

    answer = target.install(bundle(1))
    first = answer["id"]
    assert answer["legacy"] is True and answer["created"] is True and answer["previous"] is None
    assert answer["running"]["usbipd.service"] == {"pid": old_daemon.pid, "release": None, "stale": True}
    assert sorted(os.listdir(target.prefix)) == ["current", "releases", "usbip"]
    assert (legacy / "version.py").read_text() == "REVISION = 0\n"

    # The role rewrites the wrapper; the old daemon still runs the old copy, which stays.
    target.wrapper("usbipd", "usbipd")
    assert b"RELEASE_FD" in (target.bin_dir / "usbipd").read_bytes()
    pruned = target.prune()
    kept = {first: "current", "usbip": "in use by pid %d" % old_daemon.pid}
    assert pruned == {"changed": False, "removed": [], "kept": kept}
    assert legacy.is_dir()

    # The role restarts the daemon onto the release: then nothing runs the old copy.
    target.stop(old_daemon)
    daemon = target.start("usbipd", "usbipd.service")
    assert target.install(bundle(1))["running"]["usbipd.service"] == {
        "pid": daemon.pid, "release": first, "stale": False}
    assert target.prune() == {"changed": True, "removed": ["usbip"], "kept": {first: "current"}}
    assert not legacy.exists()
    again = target.install(bundle(1))
    assert again["changed"] is False and again["legacy"] is False


# -- wrappers ---------------------------------------------------------------------------------------
def test_wrappers_removes_the_collections_wrappers_that_are_not_kept(target):
    bin_dir = target.bin_dir
    for name, entry in (("usbipd", "usbipd"), ("usbip-attachd", "attachd"), ("usbip", "usbip")):
        target.wrapper(name, entry)
    target.wrapper("usbip-py", "usbip", OLD_WRAPPER_TEMPLATE)  # a former name, from before releases
    (bin_dir / "tool").write_text("#!/bin/sh\necho not ours\n")
    os.symlink("usbip-attachd", bin_dir / "alias")
    (bin_dir / "subdir").mkdir()

    args = ("wrappers", str(bin_dir), "--keep", "usbipd,usbip")
    checked = target.stack(*args, "--check")
    assert checked == {"changed": True, "removed": [str(bin_dir / "usbip-attachd"), str(bin_dir / "usbip-py")]}
    assert (bin_dir / "usbip-attachd").exists() and (bin_dir / "usbip-py").exists()
    assert target.stack(*args) == checked
    assert sorted(os.listdir(bin_dir)) == ["alias", "subdir", "tool", "usbip", "usbipd"]
    assert target.stack(*args) == {"changed": False, "removed": []}

    # remove.yml passes an empty --keep when the other role is not installed: every wrapper goes.
    assert target.stack("wrappers", str(bin_dir), "--keep", "") == {
        "changed": True, "removed": [str(bin_dir / "usbip"), str(bin_dir / "usbipd")]}
    assert sorted(os.listdir(bin_dir)) == ["alias", "subdir", "tool"]
    assert target.stack("wrappers", str(target.root / "missing")) == {"changed": False, "removed": []}


# -- remove and rmdir -------------------------------------------------------------------------------
def test_remove_leaves_nothing_under_the_prefix(target):
    target.install(bundle(1))
    target.install(bundle(2))
    (target.prefix / "usbip").mkdir()
    (target.prefix / "usbip" / "version.py").write_text("")
    os.symlink("releases/x", target.prefix / ".current.999")  # an interrupted switch
    os.symlink("releases/y", target.prefix / ".previous.998")

    before = target.snapshot()
    checked = target.stack("remove", str(target.prefix), "--check")
    assert checked["changed"] is True
    assert sorted(checked["removed"]) == sorted(
        ["current", "previous", "releases/", "usbip/", ".current.999", ".previous.998", str(target.prefix)])
    assert target.snapshot() == before

    assert target.stack("remove", str(target.prefix)) == checked
    assert not target.prefix.exists() and target.prefix.parent.is_dir()
    assert target.stack("remove", str(target.prefix)) == {"changed": False, "removed": []}


def test_remove_keeps_the_prefix_that_holds_something_else(target):
    target.install(bundle())
    (target.prefix / "notes.txt").write_text("mine\n")
    answer = target.stack("remove", str(target.prefix))
    assert sorted(answer["removed"]) == ["current", "releases/"]
    assert os.listdir(target.prefix) == ["notes.txt"]


def test_rmdir_removes_the_empty_directories_in_order(target):
    config = target.root / "etc" / "usbip"
    (config / "tls").mkdir(parents=True)
    assert target.stack("rmdir", str(config / "tls"), str(config), "--check") == {
        "changed": True, "removed": [str(config / "tls")]}
    assert (config / "tls").is_dir()
    assert target.stack("rmdir", str(config / "tls"), str(config)) == {
        "changed": True, "removed": [str(config / "tls"), str(config)]}
    assert not config.exists()
    (config / "tls").mkdir(parents=True)
    (config / "usbipd.yml").write_text("")
    assert target.stack("rmdir", str(config / "tls"), str(config))["removed"] == [str(config / "tls")]
    assert (config / "usbipd.yml").exists()


# -- refusals ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("files, error", [
    ({"../evil.py": ""}, "'../evil.py'"),
    ({"/etc/evil.py": ""}, "'/etc/evil.py'"),
    ({"cli/../../evil.py": ""}, "'cli/../../evil.py'"),
    ({"module.so": ""}, "'module.so'"),
])
def test_a_bundle_path_outside_the_package_is_refused(target, files, error):
    answer = target.install(files, rc=1)
    assert answer["failed"] is True and "not a relative .py path of the stack" in answer["msg"]
    assert error in answer["msg"]
    assert not target.prefix.exists()


@pytest.mark.parametrize("stdin", ["", "not json", '["version.py"]', '{"version.py": 1}'])
def test_a_bundle_that_is_not_an_object_of_contents_is_one_clear_line(target, stdin):
    """Not a traceback (and no JSON on stdout, which the role's changed_when would choke on)."""
    answer = target.stack("install", str(target.prefix), VERSION, stdin=stdin, rc=1)
    assert answer["failed"] is True and answer["msg"].startswith("the bundle on stdin is not"), answer
    assert not target.prefix.exists()


def test_bad_arguments_are_one_clear_line(target):
    assert target.stack("install", "relative/prefix", VERSION, stdin="{}", rc=1)["msg"] == \
        "not an absolute path: relative/prefix"
    assert target.stack("install", str(target.prefix), stdin="{}", rc=1)["msg"] == "expected 2 arguments, got 1"
    assert target.stack("prune", str(target.prefix), "b", "--bogus", "x", rc=1)["msg"] == "unknown option --bogus"
    assert target.stack("upgrade", rc=1)["msg"].startswith("usage: stack.py {")
    target.prefix.mkdir(parents=True)
    (target.prefix / "current").mkdir()
    answer = target.install(bundle(), rc=1)
    assert answer["msg"] == "%s/current is not a symbolic link: move it away" % target.prefix
    assert target.releases() == []
