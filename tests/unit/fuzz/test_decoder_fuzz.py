# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Short runs of the decoder fuzzers (the long runs: docs/security.md).

The mutation fuzzer runs in-process with coverage feedback; atheris (when
installed) in a subprocess, since libFuzzer ends the process it runs in.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys

import pytest

from tests.fuzz import decoders, mutator, targets
from usbip.protocol import DevlistRequest

#: requirements-dev.txt's environment marker of atheris.
ATHERIS_PLATFORM = platform.system() == "Linux" and platform.machine() == "x86_64"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_short_mutation_run_finds_nothing_and_reaches_every_message():
    report = decoders.run_mutation(5000, seed=7)
    assert report.failures == [], report.text()
    assert report.inputs == 5000
    reached = {name for counts in report.outcomes.values() for name in counts}
    # Mutants of the seeds still parse as every kind of message, and fail in every way.
    assert {"DevlistRequest", "ImportRequest", "DevlistReply", "ImportReply", "CmdSubmit", "CmdUnlink", "RetSubmit",
            "RetUnlink"} <= reached
    assert {"Truncated", "Overlong", "VersionMismatch", "UnknownCode", "UnsupportedOperation", "BadString",
            "BadCount", "BadValue", "UnexpectedMessage"} <= reached
    assert report.transitions > 150  # coverage feedback ran


def test_the_same_seed_gives_the_same_inputs():
    first = mutator.Mutator(mutator.codec_seeds(), seed=3)
    second = mutator.Mutator(mutator.codec_seeds(), seed=3)
    assert [first.next() for _ in range(200)] == [second.next() for _ in range(200)]


def test_a_planted_bug_is_reported_with_its_input():
    """The run can fail: a decoder raising KeyError on DEVLIST-with-extra-bytes is found and kept."""
    devlist = DevlistRequest().encode()

    def buggy(data, outcomes=None):
        if data.startswith(devlist[:4]) and len(data) > 8:
            raise KeyError("planted")
        targets.check(data, outcomes)

    report = decoders.run_mutation(20000, seed=1, coverage=0, max_failures=3, check=buggy)
    assert len(report.failures) == 3, report.text()
    failure = report.failures[0]
    assert failure.error.startswith("KeyError") and failure.data.startswith(devlist[:4])
    assert "planted" in failure.trace


def test_replay_of_an_input():
    result = subprocess.run([sys.executable, "-m", "tests.fuzz.decoders", "--replay", "0111800500000000"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


def test_short_atheris_run():
    if importlib.util.find_spec("atheris") is None:
        # requirements-dev.txt installs it where its wheels exist: there, missing is a broken venv, not a skip.
        assert not ATHERIS_PLATFORM, "atheris is not installed: requirements-dev.txt installs it on x86_64 Linux"
        pytest.skip("requirements-dev.txt installs atheris on x86_64 Linux only (this is %s %s)"
                    % (platform.system(), platform.machine()))
    result = subprocess.run([sys.executable, "-m", "tests.fuzz.decoders", "--engine", "atheris", "--inputs", "5000"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 5000 runs" in result.stderr
    assert "INFO: Instrumenting usbip.protocol.control" in result.stderr
