# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz every decoder and reader of the wire codec (see :mod:`tests.fuzz.targets`).

Two engines over the same oracle:

``mutate`` (default)  the seeded mutation fuzzer of :mod:`tests.fuzz.mutator`,
                      guided by line coverage of ``usbip/protocol`` (sampled:
                      ``--coverage-every``); deterministic for a given ``--seed``.
``atheris``           libFuzzer's coverage-guided engine on instrumented
                      ``usbip`` bytecode (``pip install atheris``).

    .venv/bin/python -m tests.fuzz.decoders --inputs 1000000
    .venv/bin/python -m tests.fuzz.decoders --engine atheris --inputs 1000000

Exit status 0 when every input ended in a message or a ProtocolError and
every contract check held, 1 otherwise (the first failures are printed with
their input in hex, which ``--replay HEX`` runs again).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback
from typing import Dict, List, Optional

from . import MODULE_UTILS

PROTOCOL_DIR = os.path.join(MODULE_UTILS, "usbip", "protocol")


@dataclasses.dataclass
class Failure:
    data: bytes
    error: str
    trace: str


@dataclasses.dataclass
class Report:
    engine: str
    inputs: int
    seconds: float
    failures: List[Failure]
    outcomes: Dict[str, Dict[str, int]]
    corpus: int = 0
    transitions: int = 0

    @property
    def unexpected(self) -> int:
        return len(self.failures)

    def text(self) -> str:
        lines = ["engine %s: %d inputs in %.1f s (%.0f/s), %d failures, corpus %d, %d line transitions covered"
                 % (self.engine, self.inputs, self.seconds, self.inputs / max(self.seconds, 1e-9), self.unexpected,
                    self.corpus, self.transitions)]
        for target, counts in self.outcomes.items():
            lines.append("  %-14s %s" % (target, ", ".join("%s %d" % kv for kv in counts.items())))
        for failure in self.failures[:10]:
            lines.append("FAILURE %s\n  input %s\n%s" % (failure.error, failure.data.hex(), failure.trace))
        return "\n".join(lines)


def run_mutation(inputs: int, seed: int = 0, coverage: int = 8, max_failures: int = 20, check=None) -> Report:
    """``inputs`` mutated inputs through :func:`targets.check`; failures are collected, not raised.

    Line tracing costs ten times the check itself, so one input in ``coverage``
    runs traced (0: none); the others only against the oracle.
    """
    from . import mutator, targets

    check = check or targets.check
    fuzz = mutator.Mutator(mutator.codec_seeds(), seed=seed)
    tracer = mutator.LineCoverage(PROTOCOL_DIR) if coverage else None
    outcomes = targets.Outcomes()
    failures: List[Failure] = []
    started = time.monotonic()
    for data in fuzz.corpus[:]:
        _one(check, data, outcomes, failures, tracer, None)
    done = 0
    for done in range(1, inputs + 1):
        data = fuzz.next()
        traced = tracer if coverage and done % coverage == 0 else None
        if _one(check, data, outcomes, failures, traced, fuzz) and len(failures) >= max_failures:
            break
    return Report("mutate", done, time.monotonic() - started, failures, outcomes.summary(), len(fuzz.corpus),
                  len(tracer.seen) if tracer else 0)


def _one(check, data: bytes, outcomes, failures: List[Failure], tracer, fuzz) -> bool:
    try:
        if tracer is not None:
            if tracer.run(lambda d: check(d, outcomes), data) and fuzz is not None:
                fuzz.add(data)
        else:
            check(data, outcomes)
    except (Exception, RecursionError, MemoryError) as err:  # noqa: B902 - the oracle: anything escaping is a bug
        failures.append(Failure(data, "%s: %s" % (type(err).__name__, err), traceback.format_exc(limit=-4)))
        return True
    return False


def run_atheris(inputs: int, seed: int, extra: Optional[List[str]] = None) -> None:
    """Hand over to libFuzzer; it exits the process (status 0, or non-zero on a crash)."""
    import atheris

    with atheris.instrument_imports(include=["usbip"]):
        import usbip.device  # noqa: F401
        import usbip.protocol  # noqa: F401
    from . import mutator, targets

    corpus = tempfile.mkdtemp(prefix="usbip-fuzz-corpus-")
    for index, data in enumerate(mutator.codec_seeds()):
        with open(os.path.join(corpus, "seed-%02d" % index), "wb") as f:
            f.write(data)
    artifacts = os.path.join(tempfile.gettempdir(), "usbip-fuzz-artifacts") + os.sep
    os.makedirs(artifacts, exist_ok=True)
    argv = [sys.argv[0], "-runs=%d" % inputs, "-seed=%d" % (seed or 1), "-max_len=4096",
            "-print_final_stats=1", "-artifact_prefix=" + artifacts] + (extra or []) + [corpus]
    atheris.Setup(argv, targets.check)
    atheris.Fuzz()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.decoders", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    parser.add_argument("--coverage-every", type=int, default=8, metavar="N",
                        help="mutate: trace one input in N for coverage feedback (0: none)")
    parser.add_argument("--replay", metavar="HEX", help="check one input and print the outcome")
    parser.add_argument("--json", action="store_true", help="mutate: print the report as JSON too")
    args = parser.parse_args(argv)
    if args.replay is not None:
        from . import targets

        targets.check(bytes.fromhex(args.replay))
        print("ok")
        return 0
    if args.engine == "atheris":
        run_atheris(args.inputs, args.seed)
        return 0
    report = run_mutation(args.inputs, args.seed, coverage=args.coverage_every)
    print(report.text())
    if args.json:
        print(json.dumps({"inputs": report.inputs, "seconds": round(report.seconds, 1),
                          "failures": report.unexpected, "outcomes": report.outcomes}))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
