"""Mutation testing of the stack's riskiest modules (``make mutation``), with mutmut.

For each target of ``targets.py`` this builds a work directory under ``build/mutation/<target>/``:
a snapshot of the package as ``src/usbip`` (mutmut names a mutant after its file's module, and the tests
import the package as ``usbip``), of ``tests/unit`` and ``tests/fuzz``, and a ``pyproject.toml`` that
tells mutmut what to mutate and pytest where to import from. mutmut then mutates the target's modules,
runs the target's tests once to learn which test calls which function, and runs each mutant against
the tests that call its function. The snapshot is taken first, so that editing the tree while a run
goes on changes nothing in it.

Prints one line per target (mutants, killed, survived, score) and writes the survivors to
``build/mutation/survivors.txt``, with each survivor's diff in ``build/mutation/<target>/survivors.diff``.
To look at one mutant again, from the target's work directory: ``../../../.venv/bin/mutmut show NAME``.

    python tools/mutation/run.py                     # every target (hours)
    python tools/mutation/run.py validate records    # some targets
    python tools/mutation/run.py --ref HEAD vhci     # the committed code and tests, not the work tree
    python tools/mutation/run.py --survivors vhci    # only the last run's survivors again (after new tests)
"""

from __future__ import annotations

import argparse
import fcntl
import fnmatch
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from typing import Dict, List, Optional, Tuple

from targets import ORDER, TARGETS, Target

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(REPO, "build", "mutation")
PACKAGE = "plugins/module_utils/usbip"
#: What the targets' tests need beside the package: the unit tests with their fakes and captures, the fuzz kit,
#: the lab's certificate authority (lab.pki).
TEST_TREES = ("tests/unit", "tests/fuzz", "lab")

#: mutmut's exit codes of a mutant's test run, as it files them (mutmut.stats.status_by_exit_code).
KILLED = {1: "killed", 3: "killed", -11: "segfault", -9: "segfault", 37: "caught by type check"}
TIMEOUT = {36, -24, 24, 152, 255}
SURVIVED = {0: "survived"}
NO_TESTS = {5, 33}
SKIPPED = {34}


def status(code: Optional[int]) -> str:
    if code in KILLED:
        return "killed"
    if code in TIMEOUT:
        return "timeout"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    if code in SKIPPED:
        return "skipped"
    if code is None:
        return "not checked"
    return "suspicious"


def snapshot(work: str, ref: Optional[str]) -> None:
    """The package as ``src/usbip`` and the test trees, from the work tree or from commit ``ref``."""
    if ref:
        archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", ref, PACKAGE, *TEST_TREES],
                                 check=True, stdout=subprocess.PIPE).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(os.path.join(work, "tree"), filter="data")
        tree = os.path.join(work, "tree")
    else:
        tree = REPO
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(os.path.join(tree, PACKAGE), os.path.join(work, "src", "usbip"), ignore=ignore)
    for path in TEST_TREES:
        shutil.copytree(os.path.join(tree, path), os.path.join(work, path), ignore=ignore)
    if ref:
        shutil.rmtree(os.path.join(work, "tree"))


def toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def write_config(work: str, target: Target, tests: List[str], deselected: List[str]) -> None:
    """mutmut's and pytest's settings for the work directory (mutmut copies them into ``mutants/``)."""
    pytest_args = ["-p", "no:cacheprovider", "-W", "ignore::pytest.PytestUnraisableExceptionWarning"]
    for nodeid in deselected:
        pytest_args += ["--deselect", nodeid]
    config = "\n".join([
        "[tool.mutmut]",
        'source_paths = ["src"]',
        # mutmut copies tests/ and this file into mutants/ by itself; the rest of the tests' imports:
        "also_copy = %s" % toml_list(path for path in TEST_TREES if not path.startswith("tests/")),
        "only_mutate = %s" % toml_list("src/" + module for module in target.modules),
        "pytest_add_cli_args_test_selection = %s" % toml_list(tests),
        "pytest_add_cli_args = %s" % toml_list(pytest_args),
        # Each test run in a fresh child of a process that has only collected the tests: some tests keep
        # state in their parameters (a reader fed by the test), which a second run in one process would see.
        'process_isolation = "forkserver"',
        # Every run starts afresh: none of mutmut's bookkeeping for reusing results of an earlier run
        # (a git checkout to compare with, and call tracing that slows the first run 40-fold).
        "use_git_change_detection = false",
        "track_dependencies = false",
        "",
        "[tool.pytest.ini_options]",
        # mutmut puts mutants/src (the mutated package) first on sys.path; the rest as in the repository.
        'pythonpath = ["src", ".", "tests/unit/sysfs"]',
        "timeout = 120",
        "",
    ])
    with open(os.path.join(work, "pyproject.toml"), "w", encoding="utf-8") as handle:
        handle.write(config)


def failing_tests(work: str, tests: List[str], env: Dict[str, str]) -> List[str]:
    """The tests among ``tests`` that fail on the code as it is: mutmut needs a passing run to start from.

    A tree that other work is changing may have some; they are left out of the run and named.
    """
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *tests],
                          cwd=work, env=env, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    with open(os.path.join(work, "baseline.log"), "w", encoding="utf-8") as log:
        log.write(done.stdout)
    failed = []
    for line in done.stdout.splitlines():
        for prefix in ("FAILED ", "ERROR "):
            if line.startswith(prefix):
                failed.append(line[len(prefix):].split(" - ")[0])
    return failed


def results(work: str, target: Target) -> Dict[str, str]:
    """Each mutant of the target's functions and what became of it, from mutmut's ``.meta`` files."""
    found: Dict[str, str] = {}
    for module in target.modules:
        meta = os.path.join(work, "mutants", "src", module + ".meta")
        if not os.path.exists(meta):
            continue
        with open(meta, encoding="utf-8") as handle:
            codes = json.load(handle).get("exit_code_by_key", {})
        for name, code in codes.items():
            if target.functions and not any(fnmatch.fnmatch(name, pattern) for pattern in target.functions):
                continue
            found[name] = status(code)
    return found


def score(found: Dict[str, str]) -> Tuple[int, int, float]:
    """Mutants, detected (killed or timed out) and the share detected, in percent."""
    counted = [s for s in found.values() if s != "skipped"]
    detected = sum(1 for s in counted if s in ("killed", "timeout"))
    return len(counted), detected, (100.0 * detected / len(counted)) if counted else 100.0


def show(work: str, names: List[str]) -> str:
    """The diffs of ``names`` as ``mutmut show`` prints them."""
    out = []
    for name in names:
        shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, check=False,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out.append(shown.stdout)
    return "\n".join(out)


def previous(name: str) -> Dict[str, str]:
    """The results of the target's last run (empty when there is none)."""
    try:
        with open(os.path.join(WORK, name, "results.json"), encoding="utf-8") as handle:
            return json.load(handle)["mutants"]
    except (OSError, ValueError, KeyError):
        return {}


def run_target(name: str, target: Target, ref: Optional[str], max_children: int,
               survivors_only: bool) -> Dict[str, str]:
    work = os.path.join(WORK, name)
    earlier = previous(name) if survivors_only else {}
    names = list(target.functions)
    if survivors_only:
        names = sorted(n for n, s in earlier.items() if s not in ("killed", "timeout", "skipped"))
        if not earlier or not names:
            print("    %s: %s" % (name, "no earlier run to take survivors from" if not earlier else "no survivors"))
            return earlier
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    snapshot(work, ref)
    tests = [path for path in target.tests if os.path.exists(os.path.join(work, path))]
    missing = sorted(set(target.tests) - set(tests))
    if missing:
        print("    %s: not in this tree, left out: %s" % (name, ", ".join(missing)))
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    write_config(work, target, tests, [])
    deselected = failing_tests(work, tests, env)
    if deselected:
        print("    %s: %d tests fail on the unmutated code, left out (see %s):\n      %s" % (
            name, len(deselected), os.path.join(work, "baseline.log"), "\n      ".join(deselected)))
    write_config(work, target, tests, deselected)
    started = time.monotonic()
    with open(os.path.join(work, "mutmut.log"), "w", encoding="utf-8") as log:
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children),
                               *names], cwd=work, env=env, check=False, stdout=log, stderr=subprocess.STDOUT)
    found = results(work, target)
    if survivors_only:
        # Only the survivors were run again; the rest keep the verdicts of the earlier run.
        found = dict(earlier, **{n: s for n, s in found.items() if n in names})
    minutes = (time.monotonic() - started) / 60
    if done.returncode != 0 or not found:
        print("    %s: mutmut failed (exit %d), see %s" % (name, done.returncode, os.path.join(work, "mutmut.log")))
        return {}
    survivors = sorted(n for n, s in found.items() if s not in ("killed", "timeout", "skipped"))
    with open(os.path.join(work, "survivors.diff"), "w", encoding="utf-8") as handle:
        handle.write(show(work, survivors))
    with open(os.path.join(work, "results.json"), "w", encoding="utf-8") as handle:
        json.dump({"target": name, "minutes": round(minutes, 1), "mutants": found}, handle, indent=1, sort_keys=True)
    return found


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="of %s (default: all)" % ", ".join(ORDER))
    parser.add_argument("--ref", help="mutate the code and run the tests of this commit (default: the work tree)")
    parser.add_argument("--max-children", type=int, default=1,
                        help="mutants tested at once (default 1: a full run takes hours, not the machine)")
    parser.add_argument("--fail-under", type=float, metavar="PERCENT",
                        help="exit 1 when a target's score is below PERCENT")
    parser.add_argument("--survivors", action="store_true",
                        help="run again only the mutants that survived the target's last run (after new tests)")
    parser.add_argument("--list", action="store_true", help="list the targets and their tests")
    args = parser.parse_args(argv)
    names = args.targets or list(ORDER)
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        parser.error("unknown target %s (targets: %s)" % (", ".join(unknown), ", ".join(ORDER)))
    if args.list:
        for name in names:
            target = TARGETS[name]
            print("%s: %s\n    mutates %s%s\n    tests %s" % (
                name, target.why, ", ".join(target.modules),
                " (%s)" % ", ".join(target.functions) if target.functions else "", " ".join(target.tests)))
        return 0
    os.makedirs(WORK, exist_ok=True)
    lock = open(os.path.join(WORK, ".lock"), "w")  # held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another mutation run uses %s: wait for it to end" % os.path.relpath(WORK, REPO), file=sys.stderr)
        return 2
    rows, low = [], []
    survivors_path = os.path.join(WORK, "survivors.txt")
    with open(survivors_path, "w", encoding="utf-8") as survivors:
        for name in names:
            print("==> %s: %s" % (name, ", ".join(TARGETS[name].modules)), flush=True)
            found = run_target(name, TARGETS[name], args.ref, args.max_children, args.survivors)
            total, detected, percent = score(found)
            counts = {s: sum(1 for v in found.values() if v == s) for s in set(found.values())}
            rows.append((name, total, detected, counts, percent))
            print("    %d mutants, %d killed or timed out, score %.1f%%  %s" % (
                total, detected, percent, " ".join("%s=%d" % item for item in sorted(counts.items()))), flush=True)
            for mutant, state in sorted(found.items()):
                if state not in ("killed", "timeout", "skipped"):
                    survivors.write("%s\t%s\t%s\n" % (name, state, mutant))
            survivors.flush()
            if args.fail_under is not None and percent < args.fail_under:
                low.append(name)
    print("\n%-10s %8s %8s %8s" % ("target", "mutants", "killed", "score"))
    for name, total, detected, _counts, percent in rows:
        print("%-10s %8d %8d %7.1f%%" % (name, total, detected, percent))
    print("survivors: %s (diffs: build/mutation/<target>/survivors.diff)" % os.path.relpath(survivors_path, REPO))
    if low:
        print("below %.1f%%: %s" % (args.fail_under, ", ".join(low)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
