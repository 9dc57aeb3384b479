"""Coverage of the unit suite, one row per package of the stack: the table in docs/testing.md.

Reads the JSON report that ``coverage json`` writes (``make coverage`` runs both) and adds up its
files into the stack's layers, so the table shows where the host tests reach and where they stop
(the remainder is what only the in-guest suites run: a real kernel, real sockets, root).

    python tools/mutation/coverage_by_package.py build/coverage/coverage.json [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Tuple

STACK = "plugins/module_utils/usbip/"

#: (row name, path prefix) in table order; a file counts in the first row whose prefix it starts with.
GROUPS: List[Tuple[str, str]] = [
    ("protocol", STACK + "protocol/"),
    ("net", STACK + "net/"),
    ("sysfs", STACK + "sysfs/"),
    ("daemon", STACK + "daemon/"),
    ("cli", STACK + "cli/"),
    ("config, validate, matching, attachments (package root)", STACK),
    ("Ansible modules", "plugins/modules/"),
]

_FIELDS = ("num_statements", "missing_lines", "num_branches", "num_partial_branches", "covered_branches")


def group_of(path: str) -> str:
    for name, prefix in GROUPS:
        if path.startswith(prefix):
            return name
    return "other"


def totals(report: dict) -> Dict[str, Dict[str, int]]:
    """Per group: statements, missed statements, branches, partial branches, covered branches, files."""
    rows: Dict[str, Dict[str, int]] = {}
    for path, data in report["files"].items():
        row = rows.setdefault(group_of(path), dict.fromkeys(_FIELDS + ("files",), 0))
        for field in _FIELDS:
            row[field] += data["summary"][field]
        row["files"] += 1
    return rows


def percent(covered: int, total: int) -> str:
    return "%.1f" % (100.0 * covered / total) if total else "-"


def table(rows: Dict[str, Dict[str, int]], markdown: bool) -> str:
    header = ("package", "files", "statements", "missed", "branches", "partial", "lines %", "branches %",
              "total %")
    order = [name for name, _prefix in GROUPS if name in rows] + sorted(set(rows) - {name for name, _prefix in GROUPS})
    everything = dict.fromkeys(_FIELDS + ("files",), 0)
    lines = []
    for name in order + ["all"]:
        row = rows[name] if name != "all" else everything
        if name != "all":
            for field in everything:
                everything[field] += row[field]
        statements, missed = row["num_statements"], row["missing_lines"]
        branches, covered_branches = row["num_branches"], row["covered_branches"]
        lines.append((name, str(row["files"]), str(statements), str(missed), str(branches),
                      str(row["num_partial_branches"]), percent(statements - missed, statements),
                      percent(covered_branches, branches),
                      percent(statements - missed + covered_branches, statements + branches)))
    if markdown:
        out = ["| " + " | ".join(header) + " |", "| --- " + "| ---: " * (len(header) - 1) + "|"]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                               for i, cell in enumerate(r)) for r in [header] + lines)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="the JSON report of `coverage json`")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (for docs/testing.md)")
    args = parser.parse_args(argv)
    with open(args.report, encoding="utf-8") as handle:
        report = json.load(handle)
    print(table(totals(report), args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
