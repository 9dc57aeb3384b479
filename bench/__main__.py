"""Run the benchmark suite in one lab guest and rewrite the results in docs/performance.md.

    .venv/bin/python -m bench [--quick] [--phases host,device,...] [--no-docs] [--timeout S]

The guest runs :mod:`bench.guest`; its JSON comes back through the lab's
xfer share and is kept in ``build/bench/results.json``. ``--from FILE``
re-renders the document from a kept result without booting a guest.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys

from bench import report
from lab import qemu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "performance.md")
KEPT = os.path.join(REPO, "build", "bench", "results.json")
#: Where --quick runs go: a smoke run must never replace (or be merged into) the kept results.
KEPT_QUICK = os.path.join(REPO, "build", "bench", "results-quick.json")


def host_facts() -> dict:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    qemu_version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    return {
        "host_cpu": model,
        "host_cpus": os.cpu_count(),
        "host_kernel": platform.release(),
        "host_load": os.getloadavg(),
        "qemu": qemu_version.splitlines()[0] if qemu_version else "?",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def merge(kept_path: str, new: dict, facts: dict) -> dict:
    """The kept run with the phases of ``new`` put in, each noted with when and where it ran."""
    with open(kept_path) as f:
        kept = json.load(f)
    for name, phase in new.get("phases", {}).items():
        if name == "machine":
            continue
        kept.setdefault("phases", {})[name] = phase
        kept.setdefault("durations", {})[name] = new.get("durations", {}).get(name)
        kept.setdefault("errors", {}).pop(name, None)
        if name in new.get("errors", {}):
            kept["errors"][name] = new["errors"][name]
        kept.setdefault("phase_runs", {})[name] = "%s, host load average %s" % (
            facts.get("date", "?"), "/".join("%.1f" % v for v in facts.get("host_load", [])) or "?")
    return kept


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds, shorter runs")
    parser.add_argument("--phases", help="comma-separated subset of the guest's phases")
    parser.add_argument("--timeout", type=float, default=1500, help="hard bound on the guest, seconds")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    parser.add_argument("--from", dest="source", help="render this results.json instead of running")
    parser.add_argument("--merge", action="store_true",
                        help="keep the phases of the last kept run and replace only those run now (with --phases)")
    args = parser.parse_args(argv)

    if args.source:
        with open(args.source) as f:
            results = json.load(f)
    else:
        problem = qemu.preflight()
        if problem:
            print("bench: " + problem, file=sys.stderr)
            return 2
        # An installed package ships its bytecode; the guest's root is read-only, so without
        # it every command would recompile the stack at start-up. Compile it here, once.
        compileall.compile_dir(os.path.join(REPO, "plugins"), quiet=1)
        facts = host_facts()
        command = "%s -m bench.guest --out /tmp/xfer/results.json" % shlex.quote(sys.executable)
        if args.quick:
            command += " --quick"
        if args.phases:
            command += " --phases " + shlex.quote(args.phases)
        result = qemu.run("ulimit -n 8192; " + command, timeout=args.timeout, workdir=REPO)
        produced = os.path.join(result.xfer, "results.json")
        if not os.path.exists(produced):
            print("bench: the guest left no results (rc %d)" % result.rc, file=sys.stderr)
            return result.rc or 1
        if result.rc not in (0, 1):  # 1: some phase failed and says why; anything else: the guest was lost
            print("bench: the guest ended with rc %d; partial results kept, %s left as it was"
                  % (result.rc, os.path.relpath(DOC, REPO)), file=sys.stderr)
            args.no_docs = True
        with open(produced) as f:
            results = json.load(f)
        results["host"] = facts
        results["guest_rc"] = result.rc
        results["guest_elapsed"] = result.elapsed
        kept = KEPT_QUICK if args.quick else KEPT
        if args.merge and os.path.exists(kept):
            results = merge(kept, results, facts)
        os.makedirs(os.path.dirname(kept), exist_ok=True)
        with open(kept, "w") as f:
            json.dump(results, f, indent=1)
        shutil.rmtree(result.xfer, ignore_errors=True)
        print("bench: results kept in %s" % os.path.relpath(kept, REPO))
    print(report.summary(results))
    if not args.no_docs:
        report.rewrite(DOC, results)
        print("bench: %s rewritten" % os.path.relpath(DOC, REPO))
    return 0 if not results.get("errors") else 1


if __name__ == "__main__":
    sys.exit(main())
